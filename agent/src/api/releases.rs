//! `/apps/{app}/releases` routes.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};

use super::docs::{param, RouteDoc};
use super::{ok, ApiError, ApiState, Params, Routes};
use crate::controllers::ReleaseOptions;

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/releases",
            operation: "ReleaseList",
            summary: "list an app's releases, newest first",
            auth: true,
            query: &[param!(
                "limit",
                "integer",
                false,
                "at most this many (default 10)"
            )],
            body: &[],
            response: "[Release]",
            errors: &[400, 404],
        },
        get(list),
    )
    .add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/releases",
            operation: "ReleaseCreate",
            summary: "create a release forked from parent-release (default: the newest release)",
            auth: true,
            query: &[],
            body: &[
                param!("build", "string", false, "build id to use"),
                param!(
                    "env",
                    "string",
                    false,
                    "the whole environment as KEY=VALUE lines"
                ),
                param!(
                    "description",
                    "string",
                    false,
                    "description (default: computed from the change)"
                ),
                param!("parent-release", "string", false, "release to fork from"),
            ],
            response: "Release",
            errors: &[400, 404, 409],
        },
        post(create),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/releases/{id}",
            operation: "ReleaseGet",
            summary: "get a release",
            auth: true,
            query: &[],
            body: &[],
            response: "Release",
            errors: &[404],
        },
        get(get_release),
    )
}

async fn list(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    ok(&s.controllers.releases(&app, p.usize("limit")?).await?)
}

async fn create(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let opts = ReleaseOptions {
        build: p.string("build"),
        env: p.string("env"),
        description: p.get("description").map(str::to_string),
        parent_release: p.string("parent-release"),
    };
    ok(&s.controllers.release_create(&app, opts).await?)
}

async fn get_release(
    State(s): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ok(&s.controllers.release(&app, &id).await?)
}
