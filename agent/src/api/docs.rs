//! Route documentation and the OpenAPI 3 document built from it.

use serde_json::{json, Map, Value};

/// One documented option of a route.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    /// `string`, `boolean` or `integer`.
    pub kind: &'static str,
    pub required: bool,
    pub description: &'static str,
}

/// Shorthand for a [`Param`] (a macro so the value is promoted to `'static`).
macro_rules! param {
    ($name:expr, $kind:expr, $required:expr, $description:expr) => {
        $crate::api::docs::Param {
            name: $name,
            kind: $kind,
            required: $required,
            description: $description,
        }
    };
}
pub(crate) use param;

/// The documentation of one route, registered with it.
#[derive(Clone, Copy, Debug)]
pub struct RouteDoc {
    pub method: &'static str,
    /// The path in OpenAPI (and axum) syntax: `/apps/{app}`.
    pub path: &'static str,
    pub operation: &'static str,
    pub summary: &'static str,
    /// Whether a token is needed.
    pub auth: bool,
    pub query: &'static [Param],
    /// Form or JSON body fields.
    pub body: &'static [Param],
    /// Schema of the 200 reply: a component name, or `[Name]` for a list of them.
    pub response: &'static str,
    /// Error statuses the route can answer with (besides 401 and 500).
    pub errors: &'static [u16],
}

fn schema_ref(name: &str) -> Value {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(inner) => json!({ "type": "array", "items": schema_ref(inner) }),
        None => json!({ "$ref": format!("#/components/schemas/{name}") }),
    }
}

fn error_description(code: u16) -> &'static str {
    match code {
        400 => "the request is invalid",
        401 => "missing or wrong token",
        404 => "not found",
        409 => "conflicts with the current state",
        422 => "cannot be carried out",
        _ => "server error",
    }
}

/// The OpenAPI 3 document for these routes.
pub fn openapi(routes: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let path = r.path.replace("{*", "{");
        let mut parameters: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        parameters.extend(r.query.iter().map(|p| {
            json!({ "name": p.name, "in": "query", "required": p.required,
                    "description": p.description, "schema": { "type": p.kind } })
        }));
        let mut responses = Map::new();
        let content = if r.response == "Metrics" || r.response == "Text" {
            json!({ "text/plain": { "schema": { "type": "string" } } })
        } else if r.response == "Bytes" {
            json!({ "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } })
        } else {
            json!({ "application/json": { "schema": schema_ref(r.response) } })
        };
        responses.insert(
            "200".into(),
            json!({ "description": "success", "content": content }),
        );
        let mut codes: Vec<u16> = r.errors.to_vec();
        if r.auth {
            codes.push(401);
        }
        codes.push(500);
        for code in codes {
            responses.insert(
                code.to_string(),
                json!({ "description": error_description(code),
                        "content": { "application/json": { "schema": schema_ref("Error") } } }),
            );
        }
        let mut op = json!({
            "operationId": r.operation,
            "summary": r.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if !r.auth {
            op["security"] = json!([]);
        }
        if !r.body.is_empty() {
            let mut props = Map::new();
            let mut required = Vec::new();
            for p in r.body {
                props.insert(
                    p.name.into(),
                    json!({ "type": p.kind, "description": p.description }),
                );
                if p.required {
                    required.push(p.name);
                }
            }
            let schema = json!({ "type": "object", "properties": props, "required": required });
            op["requestBody"] = json!({
                "required": !required.is_empty(),
                "content": {
                    "application/x-www-form-urlencoded": { "schema": schema },
                    "application/json": { "schema": schema },
                }
            });
        }
        let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
        entry[r.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Dray rack API",
            "version": crate::VERSION,
            "description": "The HTTP API of drayd, the Dray rack agent. Convox-compatible shapes; errors are {\"error\": \"message\"}.",
        },
        "servers": [ { "url": "http://127.0.0.1:5443" } ],
        "security": [ { "bearer": [] }, { "basic": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "basic": { "type": "http", "scheme": "basic", "description": "any user name; the token is the password" },
            },
            "schemas": schemas(),
        }
    })
}

fn schemas() -> Value {
    let s = |kind: &str| json!({ "type": kind });
    let time = json!({ "type": "string", "format": "date-time" });
    // The status enums come from the wire types, so the document cannot miss a value.
    let words = |all: Vec<&'static str>| json!({ "type": "string", "enum": all });
    let process_status = words(
        dray_sdk::ProcessStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect(),
    );
    let resource_status = words(
        dray_sdk::ResourceStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect(),
    );
    let app_status = words(
        dray_sdk::AppStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect(),
    );
    json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": s("string") } },
        "Ok": { "type": "object", "properties": { "status": s("string") } },
        "OpenApi": { "type": "object", "description": "this document" },
        "Object": { "type": "object", "required": ["Url"], "properties": { "Url": s("string") } },
        "BuildImport": { "type": "object", "properties": {
            "build": { "$ref": "#/components/schemas/Build" }, "release": { "$ref": "#/components/schemas/Release" } } },
        "Process": { "type": "object", "required": ["id", "app", "status"], "properties": {
            "id": s("string"), "app": s("string"), "command": s("string"), "cpu": s("number"),
            "host": s("string"), "image": s("string"), "instance": s("string"), "memory": s("number"),
            "name": s("string"), "ports": { "type": "array", "items": s("string") }, "release": s("string"),
            "started": time, "service": s("string"), "type": s("string"), "restarts": s("integer"),
            "exit_code": s("integer"),
            "status": process_status,
        }},
        "Endpoint": { "type": "object", "required": ["app", "service", "process", "port"], "properties": {
            "app": s("string"), "service": s("string"), "process": s("string"), "release": s("string"),
            "instance": s("string"), "address": s("string"), "port": s("integer"),
            "healthy": s("boolean"), "draining": s("boolean"),
        }},
        "Service": { "type": "object", "required": ["name"], "properties": {
            "name": s("string"), "count": s("integer"), "running": s("integer"), "cpu": s("integer"),
            "memory": s("integer"), "domain": s("string"),
            "ports": { "type": "array", "items": { "type": "object", "properties": { "balancer": s("integer"), "container": s("integer") } } },
        }},
        "Image": { "type": "object", "required": ["name"], "properties": {
            "name": s("string"), "digest": s("string"), "size": s("integer"),
            "created": { "type": "string", "format": "date-time", "nullable": true },
        }},
        "Plugin": { "type": "object", "required": ["name", "status"], "properties": {
            "name": s("string"), "version": s("string"),
            "kind": { "type": "string", "enum": ["resource", "balancer"] },
            "types": { "type": "array", "items": s("string") },
            "status": { "type": "string", "enum": ["ok", "failed"] },
            "reason": s("string"), "contract": s("string"), "summary": s("string"),
            "sha256": s("string"), "restarts": s("integer"),
            "grants": { "type": "array", "items": s("string") },
        }},
        "Resource": { "type": "object", "required": ["name", "type", "status"], "properties": {
            "name": s("string"), "type": s("string"),
            "status": resource_status,
            "url": s("string"), "reason": s("string"), "plugin": s("string"), "port": s("integer"),
            "outputs": { "type": "array", "items": { "type": "object", "properties": {
                "key": s("string"), "value": s("string"), "secret": s("boolean") } } },
            "objects": { "type": "array", "items": { "type": "object", "properties": {
                "name": s("string"), "kind": s("string"), "id": s("string"), "version": s("string"),
                "host": s("string"), "port": s("integer") } } },
            "links": { "type": "array", "items": s("string") },
        }},
        "ResourcePlan": { "type": "object", "properties": {
            "resource": s("string"), "type": s("string"),
            "plan": { "type": "object", "description": "the plugin's resource-plan (objects, diagnostics), as in wit/types.wit" },
        }},
        "App": { "type": "object", "required": ["name", "status"], "properties": {
            "name": s("string"), "status": app_status,
            "release": s("string"), "locked": s("boolean"), "router": s("string"),
            "generation": s("string"), "parameters": { "type": "object", "additionalProperties": s("string") },
            "created": time, "deploy-error": s("string"), "deploying": s("string"),
            "progress": { "type": "array", "items": { "type": "object", "properties": {
                "service": s("string"), "release": s("string"), "desired": s("integer"), "updated": s("integer"),
                "healthy": s("integer"), "old": s("integer") } } },
        }},
        "Build": { "type": "object", "required": ["id", "app", "status"], "properties": {
            "id": s("string"), "app": s("string"), "description": s("string"), "entrypoint": s("string"),
            "git-sha": s("string"), "logs": s("string"), "manifest": s("string"), "process": s("string"),
            "release": s("string"), "reason": s("string"),
            "status": { "type": "string", "enum": ["created", "running", "complete", "failed"] },
            "started": time, "ended": { "type": "string", "format": "date-time", "nullable": true },
        }},
        "Release": { "type": "object", "required": ["id", "app"], "properties": {
            "id": s("string"), "app": s("string"), "build": s("string"),
            "env": { "type": "string", "description": "sorted KEY=VALUE lines" },
            "manifest": s("string"), "description": s("string"), "created": time,
        }},
        "System": { "type": "object", "required": ["name", "status", "version"], "properties": {
            "name": s("string"), "domain": s("string"), "provider": s("string"), "status": s("string"),
            "version": s("string"), "count": s("integer"), "region": s("string"), "type": s("string"),
            "parameters": { "type": "object", "additionalProperties": s("string") },
            "outputs": { "type": "object", "additionalProperties": s("string") },
        }},
    })
}
