//! The HTTP API against a real drayd: auth, status codes, error bodies, OpenAPI coverage.

use dray_tests::Rack;
use serde_json::Value;

/// A raw HTTP call with an optional token, returning status and body.
async fn call(
    rack: &Rack,
    method: &str,
    path: &str,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String) {
    let client = reqwest_like::Client::new();
    client.call(rack, method, path, auth, form).await
}

/// A minimal HTTP/1.1 client over a TcpStream, so the tests see exactly what goes on the wire.
mod reqwest_like {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Client;

    impl Client {
        pub fn new() -> Self {
            Client
        }

        pub async fn call(
            &self,
            rack: &super::Rack,
            method: &str,
            path: &str,
            auth: Option<&str>,
            form: &[(&str, &str)],
        ) -> (u16, String) {
            let body: String = form
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect::<Vec<_>>()
                .join("&");
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
                body.len()
            );
            if !body.is_empty() {
                req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            }
            if let Some(a) = auth {
                req.push_str(&format!("Authorization: {a}\r\n"));
            }
            req.push_str("\r\n");
            req.push_str(&body);
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", rack.port))
                .await
                .expect("connect");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            let text = String::from_utf8_lossy(&out).into_owned();
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status line");
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            (status, body)
        }
    }

    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
}

fn bearer(rack: &Rack) -> String {
    format!("Bearer {}", rack.token)
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {body}"))
        .to_string()
}

#[tokio::test]
async fn health_is_public_and_everything_else_needs_the_token() {
    let rack = Rack::start().await;
    assert_eq!(call(&rack, "GET", "/health", None, &[]).await.0, 200);
    let (status, body) = call(&rack, "GET", "/apps", None, &[]).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("invalid or missing token"));
    assert_eq!(
        call(&rack, "GET", "/apps", Some("Bearer nope-nope"), &[])
            .await
            .0,
        401
    );
    assert_eq!(
        call(&rack, "GET", "/apps", Some(&bearer(&rack)), &[])
            .await
            .0,
        200
    );

    // Convox-style Basic auth: any user, the token as password.
    use base64_lite::encode;
    let basic = format!("Basic {}", encode(&format!("convox:{}", rack.token)));
    assert_eq!(
        call(&rack, "GET", "/system", Some(&basic), &[]).await.0,
        200
    );
    let wrong = format!("Basic {}", encode("convox:wrong"));
    assert_eq!(
        call(&rack, "GET", "/system", Some(&wrong), &[]).await.0,
        401
    );
    // The SDK takes the token from the URL too.
    let url = format!("http://convox:{}@127.0.0.1:{}", rack.token, rack.port);
    let sys = dray_sdk::Client::new(&url, None)
        .unwrap()
        .system()
        .await
        .unwrap();
    assert_eq!(sys.name, "dray");
}

mod base64_lite {
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn errors_have_the_right_status_and_a_json_message() {
    let rack = Rack::start().await;
    let auth = bearer(&rack);
    let a = Some(auth.as_str());
    let (s, b) = call(&rack, "POST", "/apps", a, &[("name", "Bad Name")]).await;
    assert_eq!(s, 400, "{b}");
    assert!(error_of(&b).starts_with("invalid app name"));
    let (s, b) = call(&rack, "POST", "/apps", a, &[]).await;
    assert_eq!((s, error_of(&b).as_str()), (400, "app name is required"));
    let (s, _) = call(&rack, "POST", "/apps", a, &[("name", "one")]).await;
    assert_eq!(s, 200);
    let (s, b) = call(&rack, "POST", "/apps", a, &[("name", "one")]).await;
    assert_eq!((s, error_of(&b).as_str()), (409, "app already exists: one"));
    let (s, b) = call(&rack, "GET", "/apps/two", a, &[]).await;
    assert_eq!((s, error_of(&b).as_str()), (404, "app not found: two"));
    let (s, b) = call(&rack, "PUT", "/apps/one", a, &[("lock", "maybe")]).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = call(&rack, "GET", "/apps/one/releases?limit=-1", a, &[]).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = call(
        &rack,
        "POST",
        "/apps/one/releases",
        a,
        &[("env", "A=1\nnot a pair")],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(error_of(&b).contains("env line 2"), "{b}");
    let (s, b) = call(
        &rack,
        "POST",
        "/apps/one/releases",
        a,
        &[("build", "BNOPENOPENO")],
    )
    .await;
    assert_eq!(
        (s, error_of(&b).as_str()),
        (404, "build not found: BNOPENOPENO")
    );
    let (s, b) = call(&rack, "GET", "/nope", a, &[]).await;
    assert_eq!(
        (s, error_of(&b).as_str()),
        (404, "no such route: GET /nope")
    );
    let (s, b) = call(&rack, "PATCH", "/apps", a, &[]).await;
    assert_eq!(s, 405, "{b}");
    // JSON bodies are accepted as well as forms.
    let client = rack.client();
    let r = client
        .release_create(
            "one",
            &dray_sdk::ReleaseCreate {
                env: Some("X=1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.description, "env add:X");
}

#[tokio::test]
async fn system_reports_rack_name_version_domain_and_status() {
    let rack = Rack::start_with(&["--rack", "prod", "--domain", "example.com"]).await;
    let s = rack.client().system().await.unwrap();
    assert_eq!(s.name, "prod");
    assert_eq!(s.domain, "example.com");
    assert_eq!(s.status, "running");
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
}

/// Every documented route answers (no "no such route", no 405), and every route the tests
/// know is documented.
#[tokio::test]
async fn openapi_documents_exactly_the_real_routes() {
    let rack = Rack::start().await;
    let auth = bearer(&rack);
    let (s, body) = call(&rack, "GET", "/openapi.json", Some(&auth), &[]).await;
    assert_eq!(s, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            documented.push(format!("{} {}", method.to_uppercase(), path));
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}"
            );
            assert!(op["responses"]["200"].is_object(), "{method} {path}");
        }
    }
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let concrete = path
            .replace("{key}", "tmp/x.bin")
            .replace("{pid}", "web-abcde")
            .replace("{service}", "web")
            .replace("{app}", "docsapp")
            .replace("{id}", "RNOPENOPENO")
            .replace("{name}", "nosuchplugin");
        let (status, body) = call(&rack, method, &concrete, Some(&auth), &[]).await;
        assert_ne!(status, 405, "{route} is documented but not routed: {body}");
        if status == 404 {
            // A HEAD reply has no body: ask the same path with GET for the message.
            let body = if method == "HEAD" {
                call(&rack, "GET", &concrete, Some(&auth), &[]).await.1
            } else {
                body
            };
            let msg = error_of(&body);
            assert!(
                !msg.starts_with("no such route"),
                "{route} is documented but not routed"
            );
        }
    }
    // Routes the CLI and SDK use must all be documented.
    for r in [
        "GET /health",
        "GET /auth",
        "GET /system",
        "GET /openapi.json",
        "GET /apps",
        "POST /apps",
        "GET /apps/{app}",
        "PUT /apps/{app}",
        "DELETE /apps/{app}",
        "POST /apps/{app}/cancel",
        "GET /apps/{app}/releases",
        "POST /apps/{app}/releases",
        "GET /apps/{app}/releases/{id}",
        "GET /apps/{app}/builds",
        "GET /apps/{app}/builds/{id}",
        "GET /metrics",
        "POST /apps/{app}/objects/{key}",
        "GET /apps/{app}/objects/{key}",
        "HEAD /apps/{app}/objects/{key}",
        "DELETE /apps/{app}/objects/{key}",
        "POST /apps/{app}/releases/{id}/promote",
        "GET /apps/{app}/processes",
        "GET /apps/{app}/processes/{pid}",
        "DELETE /apps/{app}/processes/{pid}",
        "GET /apps/{app}/endpoints",
        "GET /apps/{app}/services",
        "PUT /apps/{app}/services/{service}",
        "POST /apps/{app}/services/{service}/restart",
        "POST /apps/{app}/restart",
        "POST /apps/{app}/builds/import-image",
        "GET /images",
        "POST /images",
        "GET /apps/{app}/logs",
        "POST /apps/{app}/services/{service}/processes",
        "GET /apps/{app}/processes/{pid}/exec",
        "GET /plugins",
        "POST /plugins",
        "PUT /plugins",
        "GET /plugins/{name}",
        "PUT /plugins/{name}",
        "DELETE /plugins/{name}",
        "GET /apps/{app}/resources",
        "GET /apps/{app}/resources/{name}",
        "GET /apps/{app}/resources/{name}/plan",
        "GET /apps/{app}/resources/{name}/console",
        "GET /apps/{app}/resources/{name}/data",
    ] {
        assert!(documented.iter().any(|d| d == r), "{r} is not documented");
    }
    assert_eq!(
        documented.len(),
        46,
        "update the list above when adding routes: {documented:?}"
    );
}

#[tokio::test]
async fn token_is_generated_on_first_start_kept_private_and_reused() {
    let mut rack = Rack::start().await;
    assert_eq!(rack.token.len(), 64);
    let path = rack.data_dir().join("token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    rack.kill9();
    rack.spawn();
    rack.wait_ready().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), rack.token);
    rack.client().apps().await.unwrap();
}

#[tokio::test]
async fn config_file_and_env_vars_configure_the_agent() {
    let containerd = dray_runtime::testing::TestContainerd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = dray_tests::free_port();
    let cfg = dir.path().join("drayd.toml");
    std::fs::write(
        &cfg,
        format!(
            "data-dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nrack = \"fromfile\"\ntoken = \"file-token-123\"\nlog-format = \"json\"\ncontainerd-socket = \"{}\"\ncontainerd-namespace = \"{}\"\n",
            dir.path().join("data").display(),
            containerd.socket().display(),
            containerd.namespace(),
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(dray_tests::bin("drayd"))
        .arg("--config")
        .arg(&cfg)
        .env("DRAY_DOMAIN", "env.example")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client =
        dray_sdk::Client::new(&format!("127.0.0.1:{port}"), Some("file-token-123".into())).unwrap();
    let mut sys = None;
    for _ in 0..200 {
        if let Ok(s) = client.system().await {
            sys = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let sys = sys.expect("drayd answered");
    assert_eq!(sys.name, "fromfile");
    assert_eq!(sys.domain, "env.example");
    // JSON logs: every line is a JSON object.
    let log = String::from_utf8_lossy(&out.stderr);
    let first = log.lines().next().expect("a log line");
    assert!(serde_json::from_str::<Value>(first).is_ok(), "{first}");

    // A bad config file is refused with its name and the key.
    std::fs::write(&cfg, "lisen = \"x\"\n").unwrap();
    let out = std::process::Command::new(dray_tests::bin("drayd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("drayd.toml") && err.contains("lisen"), "{err}");
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() {
    let rack = Rack::start().await;
    let auth = bearer(&rack);
    call(&rack, "GET", "/apps", Some(&auth), &[]).await;
    let (status, body) = call(&rack, "GET", "/metrics", Some(&auth), &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE dray_api_request_duration_seconds histogram"),
        "{body}"
    );
    assert!(
        body.contains("dray_api_request_duration_seconds_count{method=\"GET\",route=\"/apps\",status=\"200\"} 1"),
        "{body}"
    );
    assert_eq!(call(&rack, "GET", "/metrics", None, &[]).await.0, 401);
}

#[tokio::test]
async fn objects_round_trip_and_keys_cannot_escape() {
    let rack = Rack::start().await;
    let client = rack.client();
    client.app_create("objs").await.unwrap();
    let file = rack.dir.path().join("upload.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let url = client
        .object_store_file("objs", "tmp/upload.bin", &file)
        .await
        .unwrap();
    assert_eq!(url, "object://objs/tmp/upload.bin");
    let stored = std::fs::read(rack.data_dir().join("objects/objs/tmp/upload.bin")).unwrap();
    assert_eq!(stored, data);
    let auth = bearer(&rack);
    assert_eq!(
        call(
            &rack,
            "HEAD",
            "/apps/objs/objects/tmp/upload.bin",
            Some(&auth),
            &[]
        )
        .await
        .0,
        200
    );
    let (s, b) = call(
        &rack,
        "POST",
        "/apps/objs/objects/a/..%2F..%2Fescape",
        Some(&auth),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = call(&rack, "POST", "/apps/nope/objects/x", Some(&auth), &[]).await;
    assert_eq!((s, error_of(&b).as_str()), (404, "app not found: nope"));
    assert_eq!(
        call(
            &rack,
            "DELETE",
            "/apps/objs/objects/tmp/upload.bin",
            Some(&auth),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &rack,
            "GET",
            "/apps/objs/objects/tmp/upload.bin",
            Some(&auth),
            &[]
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn drayd_refuses_to_start_without_containerd_in_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("no-containerd.sock");
    let out = std::process::Command::new(dray_tests::bin("drayd"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--containerd-socket")
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "drayd: containerd is not running at {}:",
            sock.display()
        )),
        "{err}"
    );
}
