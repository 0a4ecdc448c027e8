//! Authentication and the audit log of mutating calls.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

/// Routes that need no token.
const PUBLIC: &[&str] = &["/health"];

/// The token presented by a request: `Bearer TOKEN`, or Basic with the token as password.
fn presented_token(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

/// Refuse requests without the right token (401), then log mutating calls to the audit target.
pub async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !PUBLIC.contains(&path.as_str()) {
        let ok = presented_token(&req)
            .map(|t| bool::from(t.as_bytes().ct_eq(state.token.as_bytes())))
            .unwrap_or(false);
        if !ok {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid or missing token: send it as `Authorization: Bearer TOKEN` or as the password of http://convox:TOKEN@host",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"dray\""),
            );
            return resp;
        }
    }
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let actor = req
        .headers()
        .get("x-dray-actor")
        .or_else(|| req.headers().get("convox-actor"))
        .or_else(|| req.headers().get("x-convox-actor"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("token")
        .to_string();
    let resp = next.run(req).await;
    state.api_latency.observe(
        &[method.as_str(), &route, resp.status().as_str()],
        started.elapsed().as_secs_f64(),
    );
    if method != Method::GET && method != Method::HEAD {
        tracing::info!(target: "audit", %method, %path, status = resp.status().as_u16(), %actor, "api call");
    }
    resp
}

/// Headers every reply carries.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}
