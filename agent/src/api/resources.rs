//! Resource routes: list, info, plan (dry-run), and the data operations over a WebSocket
//! (`.../console` with a TTY, `.../data?op=export|import`), which speak the exec protocol of
//! [`super::exec`]: the client sends stdin (the dump to import) as binary frames and an empty
//! frame at EOF; the server sends `[stream, bytes...]` frames (the dump on stream 1) and ends with
//! `{"exit":CODE}`. Errors before the upgrade are plain JSON errors, so a client fails before it
//! touches the terminal or a file.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::docs::{param, RouteDoc};
use super::{ok, ApiError, ApiState, Params, Routes};
use crate::controllers::resource_data_op;

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/resources",
            operation: "ResourceList",
            summary: "the resources of the app's release, with status and URL",
            auth: true,
            query: &[],
            body: &[],
            response: "[Resource]",
            errors: &[404],
        },
        get(list),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/resources/{name}",
            operation: "ResourceGet",
            summary: "one resource: status, URL, linked values, objects",
            auth: true,
            query: &[],
            body: &[],
            response: "Resource",
            errors: &[404],
        },
        get(info),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/resources/{name}/plan",
            operation: "ResourcePlan",
            summary: "what the resource's plugin plans now, as JSON; nothing is changed",
            auth: true,
            query: &[],
            body: &[],
            response: "ResourcePlan",
            errors: &[404, 422],
        },
        get(plan),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/resources/{name}/console",
            operation: "ResourceConsole",
            summary: "an interactive console on the resource (psql, redis-cli) over a WebSocket",
            auth: true,
            query: &[
                param!("tty", "boolean", false, "allocate a TTY (default true; false for piped input)"),
                param!("width", "integer", false, "TTY columns"),
                param!("height", "integer", false, "TTY rows"),
            ],
            body: &[],
            response: "Text",
            errors: &[400, 404, 409, 422],
        },
        get(console),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/resources/{name}/data",
            operation: "ResourceData",
            summary: "export (dump on stdout) or import (dump on stdin) the resource's data over a WebSocket",
            auth: true,
            query: &[param!("op", "string", true, "export or import")],
            body: &[],
            response: "Text",
            errors: &[400, 404, 409, 422],
        },
        get(data),
    )
}

async fn list(State(s): State<ApiState>, Path(app): Path<String>) -> Result<Response, ApiError> {
    ok(&s.controllers.resources(&app).await?)
}

async fn info(
    State(s): State<ApiState>,
    Path((app, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ok(&s.controllers.resource(&app, &name).await?)
}

async fn plan(
    State(s): State<ApiState>,
    Path((app, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ok(&s.controllers.resource_plan(&app, &name).await?)
}

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

async fn console(
    State(s): State<ApiState>,
    Path((app, name)): Path<(String, String)>,
    ws: Upgrade,
    p: Params,
) -> Result<Response, ApiError> {
    let size = match (p.usize("width")?, p.usize("height")?) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Some((w as u32, h as u32)),
        _ => None,
    };
    let tty = p.bool("tty")?;
    session(s, app, name, "console", tty, size, ws).await
}

async fn data(
    State(s): State<ApiState>,
    Path((app, name)): Path<(String, String)>,
    ws: Upgrade,
    p: Params,
) -> Result<Response, ApiError> {
    let op = p
        .get("op")
        .ok_or_else(|| ApiError::bad_request("op is required: export or import"))?
        .to_string();
    if op == "console" {
        return Err(ApiError::bad_request(
            "use GET /apps/{app}/resources/{name}/console for a console",
        ));
    }
    session(s, app, name, &op, Some(false), None, ws).await
}

async fn session(
    s: ApiState,
    app: String,
    name: String,
    op: &str,
    tty: Option<bool>,
    size: Option<(u32, u32)>,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let op = resource_data_op(op)?;
    let Ok(ws) = ws else {
        return Err(ApiError::bad_request(
            "this route needs a WebSocket upgrade (use dray resources export/import/console)",
        ));
    };
    // Start the command before upgrading, so errors come back as plain JSON.
    let handle = s
        .controllers
        .resource_data(&app, &name, op, tty, size)
        .await?;
    Ok(ws
        .on_upgrade(move |socket| super::exec::pump(socket, handle))
        .into_response())
}
