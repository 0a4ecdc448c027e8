//! The HTTP API: routing, authentication, request parameters, error replies and the OpenAPI
//! document.
//!
//! Handlers are thin: they turn a request into a controller call and the result into JSON.
//! Every route is registered together with its documentation ([`RouteDoc`]), so the OpenAPI
//! document served at `GET /openapi.json` lists exactly the routes that exist. This module must
//! never hold business rules (those live in [`crate::controllers`]) or touch the store.
//!
//! Wire conventions follow Convox: JSON replies (pretty-printed, newline-terminated), errors as
//! `{"error": "message"}` with 400/401/404/409/422/500, request options as form fields, JSON
//! fields or query parameters. Auth: `Authorization: Bearer TOKEN`, or HTTP Basic with the token
//! as the password (any user name), compared in constant time. `GET /health` needs no token.

mod apps;
mod auth;
mod builds;
mod docs;
mod exec;
mod logs;
mod objects;
mod params;
mod plugins;
mod processes;
mod releases;
mod resources;
mod system;

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use serde::Serialize;

use crate::controllers::{Controllers, Error};
use crate::metrics::{Metric, Registry};

pub use docs::{openapi, RouteDoc};
pub use params::Params;

/// State shared by every handler.
#[derive(Clone)]
pub struct ApiState {
    pub controllers: Controllers,
    token: Arc<str>,
    docs: Arc<Vec<RouteDoc>>,
    metrics: Registry,
    api_latency: Metric,
}

impl ApiState {
    pub fn new(controllers: Controllers, token: String, metrics: Registry) -> Self {
        let api_latency = metrics.histogram(
            "dray_api_request_duration_seconds",
            "API request latency by method, route and status.",
            &["method", "route", "status"],
            crate::metrics::LATENCY_BUCKETS,
        );
        ApiState {
            controllers,
            token: token.into(),
            docs: Arc::new(Vec::new()),
            metrics,
            api_latency,
        }
    }
}

/// An error reply: a status and a message rendered as `{"error": "message"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_reply(
            self.status,
            &dray_sdk::ErrorBody {
                error: self.message,
            },
        )
    }
}

/// A JSON reply, pretty-printed and newline-terminated like Convox's.
pub fn json_reply<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A 200 JSON reply.
pub fn ok<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(json_reply(StatusCode::OK, value))
}

/// The reply of calls that return nothing: `{"status": "ok"}`.
pub fn done() -> Result<Response, ApiError> {
    ok(&serde_json::json!({ "status": "ok" }))
}

/// Registers routes together with their documentation.
struct Routes {
    router: Router<ApiState>,
    docs: Vec<RouteDoc>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            docs: Vec::new(),
        }
    }

    fn add(mut self, doc: RouteDoc, handler: MethodRouter<ApiState>) -> Self {
        self.router = self.router.route(doc.path, handler);
        self.docs.push(doc);
        self
    }

    /// Document another method of a path already added with a multi-method handler.
    fn doc(mut self, doc: RouteDoc) -> Self {
        self.docs.push(doc);
        self
    }
}

/// The agent's router with every route, auth and the audit log.
pub fn router(mut state: ApiState) -> Router {
    let routes = system::routes(Routes::new());
    let routes = apps::routes(routes);
    let routes = releases::routes(routes);
    let routes = builds::routes(routes);
    let routes = objects::routes(routes);
    let routes = processes::routes(routes);
    let routes = logs::routes(routes);
    let routes = exec::routes(routes);
    let routes = plugins::routes(routes);
    let routes = resources::routes(routes);
    state.docs = Arc::new(routes.docs);
    routes
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .with_state(state)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such route: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
