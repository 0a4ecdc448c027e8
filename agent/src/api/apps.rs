//! `/apps` routes.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, get, post, put};

use super::docs::{param, RouteDoc};
use super::{done, ok, ApiError, ApiState, Params, Routes};

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "GET",
            path: "/apps",
            operation: "AppList",
            summary: "list apps",
            auth: true,
            query: &[],
            body: &[],
            response: "[App]",
            errors: &[],
        },
        get(list),
    )
    .add(
        RouteDoc {
            method: "POST",
            path: "/apps",
            operation: "AppCreate",
            summary: "create an app",
            auth: true,
            query: &[],
            body: &[
                param!(
                    "name",
                    "string",
                    true,
                    "^[a-z][a-z0-9-]*$, not rack or system"
                ),
                param!(
                    "generation",
                    "string",
                    false,
                    "accepted for Convox compatibility; always 3"
                ),
            ],
            response: "App",
            errors: &[400, 409],
        },
        post(create),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}",
            operation: "AppGet",
            summary: "get an app",
            auth: true,
            query: &[],
            body: &[],
            response: "App",
            errors: &[404],
        },
        get(get_app),
    )
    .add(
        RouteDoc {
            method: "PUT",
            path: "/apps/{app}",
            operation: "AppUpdate",
            summary: "lock or unlock an app (termination protection)",
            auth: true,
            query: &[],
            body: &[param!(
                "lock",
                "boolean",
                true,
                "true to lock, false to unlock"
            )],
            response: "App",
            errors: &[400, 404, 409],
        },
        put(update),
    )
    .add(
        RouteDoc {
            method: "DELETE",
            path: "/apps/{app}",
            operation: "AppDelete",
            summary: "delete an app with its builds and releases (refused while locked)",
            auth: true,
            query: &[],
            body: &[],
            response: "Ok",
            errors: &[404, 409],
        },
        delete(remove),
    )
    .add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/cancel",
            operation: "AppCancel",
            summary: "cancel the deployment in progress (it rolls back)",
            auth: true,
            query: &[],
            body: &[],
            response: "Ok",
            errors: &[404, 409],
        },
        post(cancel),
    )
}

async fn list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    ok(&s.controllers.apps().await?)
}

async fn create(State(s): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let name = p.get("name").unwrap_or_default();
    ok(&s.controllers.app_create(name).await?)
}

async fn get_app(State(s): State<ApiState>, Path(app): Path<String>) -> Result<Response, ApiError> {
    ok(&s.controllers.app(&app).await?)
}

async fn update(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    match p.bool("lock")? {
        Some(lock) => ok(&s.controllers.app_lock(&app, lock).await?),
        None => Err(ApiError::bad_request(
            "nothing to update: pass lock=true or lock=false",
        )),
    }
}

async fn remove(State(s): State<ApiState>, Path(app): Path<String>) -> Result<Response, ApiError> {
    s.controllers.app_delete(&app).await?;
    done()
}

async fn cancel(State(s): State<ApiState>, Path(app): Path<String>) -> Result<Response, ApiError> {
    s.controllers.app_cancel(&app).await?;
    done()
}
