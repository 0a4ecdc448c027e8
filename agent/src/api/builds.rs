//! `/apps/{app}/builds` routes.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;

use super::docs::{param, RouteDoc};
use super::{ok, ApiError, ApiState, Params, Routes};

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/builds",
            operation: "BuildList",
            summary: "list an app's builds, newest first",
            auth: true,
            query: &[param!(
                "limit",
                "integer",
                false,
                "at most this many (default 10)"
            )],
            body: &[],
            response: "[Build]",
            errors: &[400, 404],
        },
        get(list),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/builds/{id}",
            operation: "BuildGet",
            summary: "get a build",
            auth: true,
            query: &[],
            body: &[],
            response: "Build",
            errors: &[404],
        },
        get(get_build),
    )
}

async fn list(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    ok(&s.controllers.builds(&app, p.usize("limit")?).await?)
}

async fn get_build(
    State(s): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ok(&s.controllers.build(&app, &id).await?)
}
