//! `/apps/{app}/objects/{key}` routes: the per-app blob store (raw bodies).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::docs::RouteDoc;
use super::{done, ok, ApiError, ApiState, Routes};

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/objects/{*key}",
            operation: "ObjectStore",
            summary: "store an object (raw request body); replies {\"Url\": \"object://app/key\"}",
            auth: true,
            query: &[],
            body: &[],
            response: "Object",
            errors: &[400, 404],
        },
        post(store).get(fetch).head(exists).delete(remove),
    )
    .doc(RouteDoc {
        method: "GET",
        path: "/apps/{app}/objects/{*key}",
        operation: "ObjectFetch",
        summary: "download an object (raw bytes)",
        auth: true,
        query: &[],
        body: &[],
        response: "Bytes",
        errors: &[400, 404],
    })
    .doc(RouteDoc {
        method: "HEAD",
        path: "/apps/{app}/objects/{*key}",
        operation: "ObjectExists",
        summary: "whether an object exists (200 or 404)",
        auth: true,
        query: &[],
        body: &[],
        response: "Bytes",
        errors: &[404],
    })
    .doc(RouteDoc {
        method: "DELETE",
        path: "/apps/{app}/objects/{*key}",
        operation: "ObjectDelete",
        summary: "delete an object",
        auth: true,
        query: &[],
        body: &[],
        response: "Ok",
        errors: &[400, 404],
    })
}

async fn store(
    State(s): State<ApiState>,
    Path((app, key)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let url = s
        .controllers
        .object_put(&app, &key, body.into_data_stream())
        .await?;
    ok(&serde_json::json!({ "Url": url }))
}

async fn fetch(
    State(s): State<ApiState>,
    Path((app, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let file = s.controllers.object_open(&app, &key).await?;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn exists(
    State(s): State<ApiState>,
    Path((app, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    s.controllers.object_open(&app, &key).await?;
    done()
}

async fn remove(
    State(s): State<ApiState>,
    Path((app, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    s.controllers.object_delete(&app, &key).await?;
    done()
}
