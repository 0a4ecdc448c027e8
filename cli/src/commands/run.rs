//! `dray run` and `dray exec`: commands in the rack with stdin/stdout/stderr streamed over a
//! WebSocket, a TTY when stdin is a terminal, and the remote exit code as ours.
//!
//! Every check that can fail (app, service, process, command) happens before the terminal is
//! switched to raw mode, and raw mode is always restored (a guard resets it on every exit path).

use std::io::{IsTerminal, Write};

use anyhow::{anyhow, bail};
use clap::Args;
use dray_sdk::Client;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use super::Globals;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service whose image, env and resources the process gets.
    service: String,
    /// The command (default: the service's command).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Start it in the background and print its process id.
    #[arg(long, short = 'd')]
    detach: bool,
    /// Run this release instead of the active one.
    #[arg(long)]
    release: Option<String>,
    /// Extra environment (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Stop an attached process after this many seconds.
    #[arg(long, short = 't', default_value_t = 3600)]
    timeout: u64,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A process id, or a service name (one of its running processes is picked).
    pid: String,
    /// The command.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub async fn run(g: &Globals, args: RunArgs) -> anyhow::Result<i32> {
    let client = g.client()?;
    let app = g.app(None)?;
    let mut env = Vec::new();
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --env {e:?}: expected KEY=VALUE"))?;
        env.push((k.to_string(), v.to_string()));
    }
    let command = (!args.command.is_empty()).then(|| shell_words::join(&args.command));
    if args.detach {
        let p = client
            .run(
                &app,
                &args.service,
                command.as_deref(),
                args.release.as_deref(),
                &env,
            )
            .await?;
        if g.json {
            output_json(&p)?;
        } else {
            println!("{}", p.id);
        }
        return Ok(0);
    }
    let Some(command) = command else {
        bail!(
            "an attached run needs a command: dray run {} COMMAND",
            args.service
        );
    };
    // Like convox: start a process that sleeps, exec the command in it, then remove it.
    let p = client
        .run(
            &app,
            &args.service,
            Some(&format!("sleep {}", args.timeout)),
            args.release.as_deref(),
            &env,
        )
        .await?;
    let result = attach(&client, &app, &p.id, &command).await;
    if let Err(e) = client.process_stop(&app, &p.id).await {
        eprintln!("warning: cannot remove process {}: {e}", p.id);
    }
    result
}

pub async fn exec(g: &Globals, args: ExecArgs) -> anyhow::Result<i32> {
    let client = g.client()?;
    let app = g.app(None)?;
    attach(&client, &app, &args.pid, &shell_words::join(&args.command)).await
}

fn output_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Run `command` in process `pid` with this terminal attached; returns the remote exit code.
async fn attach(client: &Client, app: &str, pid: &str, command: &str) -> anyhow::Result<i32> {
    let (tty, size) = terminal();
    // Fails here (no such process, bad command) before the terminal is touched.
    let socket = client.exec_socket(app, pid, command, tty, size).await?;
    session(socket, tty, Input::Stdin, &mut std::io::stdout()).await
}

/// What a session sends as the remote command's stdin.
pub enum Input {
    /// This process's stdin.
    Stdin,
    /// A file (`resources import`).
    File(tokio::fs::File),
    /// Nothing: EOF at once (`resources export`).
    Nothing,
}

/// Whether stdin and stdout are a terminal, and its size when it has one.
pub fn terminal() -> (bool, Option<(u16, u16)>) {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    (tty, if tty { term::size() } else { None })
}

/// Drive an open exec-protocol socket: `input` goes to the remote stdin, stream 1 to `out`,
/// stream 2 to stderr; with `tty` the terminal is in raw mode (restored on every exit path) and
/// window size changes are sent. Returns the remote exit code.
pub async fn session(
    socket: dray_sdk::ExecSocket,
    tty: bool,
    input: Input,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let _raw = if tty {
        Some(term::RawMode::enable()?)
    } else {
        None
    };
    let (mut tx, mut rx) = socket.ws.split();

    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let reader: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>> = match input {
        Input::Stdin => Some(Box::new(tokio::io::stdin())),
        Input::File(f) => Some(Box::new(f)),
        Input::Nothing => None,
    };
    tokio::spawn(async move {
        let Some(mut reader) = reader else {
            let _ = in_tx.send(Vec::new()).await;
            return;
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = in_tx.send(Vec::new()).await;
                    break;
                }
                Ok(n) => {
                    if in_tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdin_open = true;
    let mut err = std::io::stderr();
    loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                    let (tag, data) = (b[0], &b[1..]);
                    if tag == 2 {
                        err.write_all(data)?;
                        err.flush()?;
                    } else {
                        out.write_all(data)?;
                        out.flush()?;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    if let Some(code) = v["exit"].as_i64() {
                        return Ok(code as i32);
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    bail!("the rack closed the session before the command finished");
                }
                Some(Err(e)) => bail!("the session broke: {e}"),
                Some(Ok(_)) => {}
            },
            chunk = in_rx.recv(), if stdin_open => match chunk {
                Some(bytes) => {
                    if bytes.is_empty() {
                        stdin_open = false;
                    }
                    tx.send(Message::Binary(bytes.into())).await?;
                }
                None => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c(), if !tty => {
                // Without a TTY, Ctrl-C ends the session: the rack kills the command.
                let _ = tx.send(Message::Close(None)).await;
                return Ok(130);
            }
            _ = winch.recv(), if tty => {
                if let Some((w, h)) = term::size() {
                    let _ = tx.send(Message::Text(format!("{{\"resize\":[{w},{h}]}}").into())).await;
                }
            }
        }
    }
}

/// The local terminal: size and raw mode.
mod term {
    /// The terminal's (columns, rows).
    pub fn size() -> Option<(u16, u16)> {
        // SAFETY: TIOCGWINSZ fills a winsize struct we own; fd 1 is valid for the process.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
        (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
    }

    /// Raw mode on stdin until dropped.
    pub struct RawMode(libc::termios);

    impl RawMode {
        pub fn enable() -> std::io::Result<RawMode> {
            // SAFETY: tcgetattr/tcsetattr on fd 0 with termios structs we own.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let saved = t;
                libc::cfmakeraw(&mut t);
                if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(RawMode(saved))
            }
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            // SAFETY: restores the attributes saved by `enable`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &self.0);
            }
        }
    }
}
