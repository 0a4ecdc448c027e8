//! `/health`, `/auth`, `/system`, `/openapi.json`.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::docs::RouteDoc;
use super::{done, ok, ApiError, ApiState, Routes};

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "GET",
            path: "/health",
            operation: "Health",
            summary: "liveness of the agent (no token needed)",
            auth: false,
            query: &[],
            body: &[],
            response: "Ok",
            errors: &[],
        },
        get(health),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/auth",
            operation: "Auth",
            summary: "check a token (used by `dray login`)",
            auth: true,
            query: &[],
            body: &[],
            response: "Ok",
            errors: &[],
        },
        get(auth),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/system",
            operation: "SystemGet",
            summary: "the rack: name, version, domain, status",
            auth: true,
            query: &[],
            body: &[],
            response: "System",
            errors: &[],
        },
        get(system),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/metrics",
            operation: "Metrics",
            summary: "Prometheus metrics (text exposition format)",
            auth: true,
            query: &[],
            body: &[],
            response: "Metrics",
            errors: &[],
        },
        get(metrics),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/openapi.json",
            operation: "OpenApi",
            summary: "this API's OpenAPI 3 document",
            auth: true,
            query: &[],
            body: &[],
            response: "OpenApi",
            errors: &[],
        },
        get(openapi),
    )
}

async fn health() -> Result<Response, ApiError> {
    done()
}

async fn auth() -> Result<Response, ApiError> {
    done()
}

async fn system(State(s): State<ApiState>) -> Result<Response, ApiError> {
    ok(&s.controllers.system())
}

async fn openapi(State(s): State<ApiState>) -> Result<Response, ApiError> {
    ok(&super::docs::openapi(&s.docs))
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        s.metrics.render(),
    )
        .into_response())
}
