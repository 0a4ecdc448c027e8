//! Processes, services, promote, images and build import routes.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post, put};

use super::docs::{param, RouteDoc};
use super::{done, ok, ApiError, ApiState, Params, Routes};
use crate::controllers::{PromoteOptions, ScaleOptions};

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/releases/{id}/promote",
            operation: "ReleasePromote",
            summary: "deploy a release (asynchronous: poll the app until its status is running)",
            auth: true,
            query: &[],
            body: &[
                param!(
                    "force",
                    "boolean",
                    false,
                    "promote even while a deployment is in progress"
                ),
                param!(
                    "timeout",
                    "integer",
                    false,
                    "seconds before an unhealthy deployment rolls back (default 600)"
                ),
            ],
            response: "Ok",
            errors: &[400, 404, 409, 422],
        },
        post(promote),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/processes",
            operation: "ProcessList",
            summary: "list an app's processes",
            auth: true,
            query: &[
                param!("service", "string", false, "only this service"),
                param!("release", "string", false, "only this release"),
            ],
            body: &[],
            response: "[Process]",
            errors: &[404],
        },
        get(list),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/processes/{pid}",
            operation: "ProcessGet",
            summary: "get a process",
            auth: true,
            query: &[],
            body: &[],
            response: "Process",
            errors: &[404],
        },
        get(get_process).delete(stop),
    )
    .doc(RouteDoc {
        method: "DELETE",
        path: "/apps/{app}/processes/{pid}",
        operation: "ProcessStop",
        summary: "stop a process (a service process is replaced)",
        auth: true,
        query: &[],
        body: &[],
        response: "Ok",
        errors: &[404],
    })
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/endpoints",
            operation: "EndpointList",
            summary: "every service process with its address, port, health and draining state",
            auth: true,
            query: &[],
            body: &[],
            response: "[Endpoint]",
            errors: &[404],
        },
        get(endpoints),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/services",
            operation: "ServiceList",
            summary: "the active release's services with their live scale",
            auth: true,
            query: &[],
            body: &[],
            response: "[Service]",
            errors: &[404],
        },
        get(services),
    )
    .add(
        RouteDoc {
            method: "PUT",
            path: "/apps/{app}/services/{service}",
            operation: "ServiceUpdate",
            summary: "scale a service (count, cpu millicores, memory MB)",
            auth: true,
            query: &[],
            body: &[
                param!("count", "integer", false, "processes"),
                param!("cpu", "integer", false, "CPU request in millicores"),
                param!("memory", "integer", false, "memory limit in MB"),
            ],
            response: "Service",
            errors: &[400, 404],
        },
        put(scale),
    )
    .add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/services/{service}/restart",
            operation: "ServiceRestart",
            summary: "replace every process of a service",
            auth: true,
            query: &[],
            body: &[],
            response: "Ok",
            errors: &[404],
        },
        post(restart_service),
    )
    .add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/restart",
            operation: "AppRestart",
            summary: "replace every process of every service",
            auth: true,
            query: &[],
            body: &[],
            response: "Ok",
            errors: &[404],
        },
        post(restart_app),
    )
    .add(
        RouteDoc {
            method: "POST",
            path: "/apps/{app}/builds/import-image",
            operation: "BuildImportImage",
            summary:
                "create a build (and a release) from an OCI image archive uploaded as an object",
            auth: true,
            query: &[],
            body: &[
                param!(
                    "object",
                    "string",
                    true,
                    "object key of the uploaded archive (POST /apps/{app}/objects/{key})"
                ),
                param!("manifest", "string", true, "the app's convox.yml"),
                param!("description", "string", false, "build description"),
            ],
            response: "BuildImport",
            errors: &[400, 404, 422],
        },
        post(import_image),
    )
    .add(
        RouteDoc {
            method: "GET",
            path: "/images",
            operation: "ImageList",
            summary: "images the rack holds",
            auth: true,
            query: &[],
            body: &[],
            response: "[Image]",
            errors: &[],
        },
        get(images).post(images_import),
    )
    .doc(RouteDoc {
        method: "POST",
        path: "/images",
        operation: "ImageImport",
        summary: "import an OCI image archive (raw request body); ?name= renames it",
        auth: true,
        query: &[param!("name", "string", false, "image name to give it")],
        body: &[],
        response: "[Image]",
        errors: &[400, 422],
    })
}

async fn promote(
    State(s): State<ApiState>,
    Path((app, id)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    let opts = PromoteOptions {
        force: p.bool("force")?.unwrap_or(false),
        timeout: p.usize("timeout")?.map(|t| t as u64),
    };
    s.controllers.promote(&app, &id, opts).await?;
    done()
}

async fn list(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    ok(&s
        .controllers
        .processes(&app, p.get("service"), p.get("release"))
        .await?)
}

async fn get_process(
    State(s): State<ApiState>,
    Path((app, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ok(&s.controllers.process(&app, &pid).await?)
}

async fn stop(
    State(s): State<ApiState>,
    Path((app, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    s.controllers.process_stop(&app, &pid).await?;
    done()
}

async fn endpoints(
    State(s): State<ApiState>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    ok(&s.controllers.endpoints(&app).await?)
}

async fn services(
    State(s): State<ApiState>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    ok(&s.controllers.services(&app).await?)
}

async fn scale(
    State(s): State<ApiState>,
    Path((app, service)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    let opts = ScaleOptions {
        count: p.usize("count")?.map(|v| v as u32),
        cpu: p.usize("cpu")?.map(|v| v as u64),
        memory: p.usize("memory")?.map(|v| v as u64),
    };
    ok(&s.controllers.scale(&app, &service, opts).await?)
}

async fn restart_service(
    State(s): State<ApiState>,
    Path((app, service)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    s.controllers.restart(&app, Some(&service)).await?;
    done()
}

async fn restart_app(
    State(s): State<ApiState>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    s.controllers.restart(&app, None).await?;
    done()
}

async fn import_image(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let key = p
        .get("object")
        .ok_or_else(|| ApiError::bad_request("object is required: upload the archive first"))?;
    let manifest = p.string("manifest").unwrap_or_default();
    let path = s.controllers.object_path(&app, key)?;
    if !path.is_file() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("object not found: {key}"),
        ));
    }
    let result = s
        .controllers
        .build_import_image(
            &app,
            &path,
            &manifest,
            p.get("description").map(str::to_string),
        )
        .await;
    let _ = s.controllers.object_delete(&app, key).await;
    let (build, release) = result?;
    ok(&serde_json::json!({ "build": build, "release": release }))
}

async fn images(State(s): State<ApiState>) -> Result<Response, ApiError> {
    ok(&s.controllers.images().await?)
}

async fn images_import(
    State(s): State<ApiState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = q.get("name").map(String::as_str).filter(|n| !n.is_empty());
    // The archive is spooled to a private temp file: containerd's import reads it twice.
    let dir = s.controllers.config().data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let path = dir.join(format!("image-{}.tar", crate::ids::token()));
    let result = async {
        spool(body, &path).await?;
        Ok::<_, ApiError>(s.controllers.images_import(&path, name).await?)
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    ok(&result?)
}

async fn spool(body: Body, path: &std::path::Path) -> Result<u64, ApiError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let err = |e: String| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        n += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(|e| err(e.to_string()))?;
    }
    f.flush().await.map_err(|e| err(e.to_string()))?;
    if n == 0 {
        return Err(ApiError::bad_request(
            "the request body is empty: send the image archive",
        ));
    }
    Ok(n)
}
