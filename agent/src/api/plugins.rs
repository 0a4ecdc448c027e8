//! Plugin routes: list, install (raw `.wasm` body), info, upgrade (raw body) and remove.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;

use super::docs::{param, RouteDoc};
use super::{ok, ApiError, ApiState, Routes};
use crate::controllers::{parse_dir_grant, MAX_PLUGIN_BYTES};

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "GET",
            path: "/plugins",
            operation: "PluginList",
            summary: "installed WebAssembly plugins with their status",
            auth: true,
            query: &[],
            body: &[],
            response: "[Plugin]",
            errors: &[],
        },
        get(list).post(install).put(upgrade_any),
    )
    .doc(RouteDoc {
        method: "POST",
        path: "/plugins",
        operation: "PluginInstall",
        summary: "install a plugin (raw request body: the .wasm component); effective at once",
        auth: true,
        query: &[
            param!("network", "boolean", false, "grant outbound network access (default: none)"),
            param!(
                "dir",
                "string",
                false,
                "grant a directory, HOST:GUEST[:ro] (repeatable; default: no filesystem)"
            ),
        ],
        body: &[],
        response: "Plugin",
        errors: &[400, 409, 422],
    })
    .doc(RouteDoc {
        method: "PUT",
        path: "/plugins",
        operation: "PluginUpgradeAny",
        summary: "upgrade the installed plugin this component is (raw request body: the .wasm); state is kept",
        auth: true,
        query: &[],
        body: &[],
        response: "Plugin",
        errors: &[400, 404, 409, 422],
    })
    .add(
        RouteDoc {
            method: "GET",
            path: "/plugins/{name}",
            operation: "PluginGet",
            summary: "get an installed plugin",
            auth: true,
            query: &[],
            body: &[],
            response: "Plugin",
            errors: &[404],
        },
        get(info).put(upgrade).delete(remove),
    )
    .doc(RouteDoc {
        method: "PUT",
        path: "/plugins/{name}",
        operation: "PluginUpgrade",
        summary: "upgrade a plugin to a new build of it (raw request body: the .wasm); state is kept",
        auth: true,
        query: &[],
        body: &[],
        response: "Plugin",
        errors: &[400, 404, 409, 422],
    })
    .doc(RouteDoc {
        method: "DELETE",
        path: "/plugins/{name}",
        operation: "PluginRemove",
        summary: "remove a plugin (refused while an app's resources use a type it serves)",
        auth: true,
        query: &[],
        body: &[],
        response: "Plugin",
        errors: &[404, 409],
    })
}

/// The whole upload, refused past [`MAX_PLUGIN_BYTES`].
async fn read_wasm(body: Body) -> Result<Vec<u8>, ApiError> {
    axum::body::to_bytes(body, MAX_PLUGIN_BYTES)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "cannot read the plugin upload (at most {MAX_PLUGIN_BYTES} bytes): {e}"
            ))
        })
}

async fn list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    ok(&s.controllers.plugins().await?)
}

async fn install(
    State(s): State<ApiState>,
    Query(q): Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Response, ApiError> {
    let mut grants = dray_plugins::Grants::default();
    for (k, v) in &q {
        match k.as_str() {
            "network" => {
                grants.network = match v.as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" | "" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "network must be true or false, not {v:?}"
                        )))
                    }
                }
            }
            "dir" => grants.preopens.push(parse_dir_grant(v)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown install option {other:?} (network, dir)"
                )))
            }
        }
    }
    let wasm = read_wasm(body).await?;
    ok(&s.controllers.plugin_install(wasm, grants).await?)
}

async fn info(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    ok(&s.controllers.plugin(&name).await?)
}

async fn upgrade_any(State(s): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let wasm = read_wasm(body).await?;
    ok(&s.controllers.plugin_upgrade(None, wasm).await?)
}

async fn upgrade(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let wasm = read_wasm(body).await?;
    ok(&s.controllers.plugin_upgrade(Some(&name), wasm).await?)
}

async fn remove(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    ok(&s.controllers.plugin_remove(&name).await?)
}
