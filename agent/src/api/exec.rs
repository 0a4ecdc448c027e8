//! One-off processes (`POST .../services/{service}/processes`) and exec over a WebSocket
//! (`GET .../processes/{pid}/exec`).
//!
//! Exec protocol (client and server): after the upgrade the client sends stdin as binary frames
//! and an empty binary frame at EOF, and may send a text frame `{"resize":[width,height]}`. The
//! server sends output as binary frames whose first byte names the stream (1 stdout or TTY,
//! 2 stderr), then a text frame `{"exit":CODE}` and closes. Errors before the upgrade are plain
//! JSON errors (404 for a missing process), so a client fails before touching the terminal.

use std::collections::BTreeMap;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::docs::{param, RouteDoc};
use super::{ok, ApiError, ApiState, Params, Routes};
use crate::controllers::RunOptions;

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/services/{service}/processes",
            operation: "ProcessRun",
            summary: "start a one-off process from a service's definition",
            auth: true,
            query: &[],
            body: &[
                param!(
                    "command",
                    "string",
                    false,
                    "command line (shell-split; default: the service's command)"
                ),
                param!(
                    "release",
                    "string",
                    false,
                    "release to run (default: the active one)"
                ),
                param!(
                    "environment",
                    "string",
                    false,
                    "extra env as KEY=VALUE lines"
                ),
            ],
            response: "Process",
            errors: &[400, 404, 422],
        },
        post(run),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/processes/{pid}/exec",
            operation: "ProcessExec",
            summary: "run a command in a process over a WebSocket ({pid} may be a service name)",
            auth: true,
            query: &[
                param!("command", "string", true, "command line (shell-split)"),
                param!("tty", "boolean", false, "allocate a TTY"),
                param!("width", "integer", false, "TTY columns"),
                param!("height", "integer", false, "TTY rows"),
            ],
            body: &[],
            response: "Text",
            errors: &[400, 404],
        },
        get(exec),
    )
}

async fn run(
    State(s): State<ApiState>,
    Path((app, service)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    let env: BTreeMap<String, String> = match p.get("environment") {
        Some(text) => crate::controllers::parse_env_text(text)?.0,
        None => BTreeMap::new(),
    };
    let opts = RunOptions {
        command: p.string("command"),
        release: p.string("release"),
        env,
    };
    ok(&s.controllers.run(&app, &service, opts).await?)
}

async fn exec(
    State(s): State<ApiState>,
    Path((app, pid)): Path<(String, String)>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    p: Params,
) -> Result<Response, ApiError> {
    let command = p
        .get("command")
        .ok_or_else(|| ApiError::bad_request("command is required"))?
        .to_string();
    let tty = p.bool("tty")?.unwrap_or(false);
    let size = match (p.usize("width")?, p.usize("height")?) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Some((w as u32, h as u32)),
        _ => None,
    };
    let Ok(ws) = ws else {
        return Err(ApiError::bad_request(
            "this route needs a WebSocket upgrade (use dray exec)",
        ));
    };
    // Start the process before upgrading, so errors come back as plain JSON.
    let handle = s.controllers.exec(&app, &pid, &command, tty, size).await?;
    Ok(ws
        .on_upgrade(move |socket| pump(socket, handle))
        .into_response())
}

pub(super) async fn pump(socket: WebSocket, mut handle: dray_runtime::ExecHandle) {
    use futures::{SinkExt, StreamExt};
    let (mut tx, mut rx) = socket.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    for (tag, pipe) in [(1u8, handle.stdout.take()), (2u8, handle.stderr.take())] {
        let Some(mut pipe) = pipe else { continue };
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf[1..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf[0] = tag;
                        if out_tx.send(buf[..=n].to_vec()).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(out_tx);
    let mut stdin = handle.stdin.take();
    let mut input_open = true;
    // The exit is the end of the session: the shim may keep its ends of the output FIFOs open
    // after the process exits, so EOF on them cannot be waited for.
    let code = {
        let wait = handle.wait();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                code = &mut wait => break code.unwrap_or(255),
                Some(bytes) = out_rx.recv() => {
                    if tx.send(Message::Binary(bytes.into())).await.is_err() {
                        let _ = handle.kill(9).await;
                    }
                }
                msg = rx.next(), if input_open => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        if b.is_empty() {
                            // EOF: close our end of the stdin FIFO, then tell the shim.
                            stdin = None;
                            let _ = handle.close_stdin().await;
                        } else if let Some(w) = stdin.as_mut() {
                            if w.write_all(&b).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                            if let (Some(w), Some(h)) = (v["resize"][0].as_u64(), v["resize"][1].as_u64()) {
                                let _ = handle.resize(w as u32, h as u32).await;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        // The client went away: stop the process.
                        input_open = false;
                        let _ = handle.kill(9).await;
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
    };
    drop(stdin);
    // Output still in flight after the exit.
    while let Ok(Some(bytes)) =
        tokio::time::timeout(std::time::Duration::from_millis(150), out_rx.recv()).await
    {
        if tx.send(Message::Binary(bytes.into())).await.is_err() {
            break;
        }
    }
    let _ = tx
        .send(Message::Text(format!("{{\"exit\":{code}}}").into()))
        .await;
    let _ = tx.close().await;
}
