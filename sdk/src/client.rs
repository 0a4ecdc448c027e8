//! A typed async client for the agent API.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::types::{
    App, Build, Endpoint, ErrorBody, Image, Plugin, Process, Release, Resource, Service, System,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The rack URL could not be parsed.
    #[error("invalid rack url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Nothing answered at the rack's address (agent down, wrong port, network).
    #[error("cannot reach the rack at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The rack answered with an error status and message.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// The rack answered something this client does not understand.
    #[error("unexpected reply from the rack at {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Options for creating a release (`POST /apps/{app}/releases`). Unset fields are forked from
/// the parent release (or the newest release when no parent is given).
#[derive(Clone, Debug, Default)]
pub struct ReleaseCreate {
    pub build: Option<String>,
    /// Sorted `KEY=VALUE` lines; replaces the parent's env entirely.
    pub env: Option<String>,
    pub description: Option<String>,
    pub parent_release: Option<String>,
}

/// A client for one rack.
#[derive(Clone, Debug)]
pub struct Client {
    base: url::Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the rack at `url` (`http://host:port`; `host:port` means http). A password
    /// in the URL (`http://convox:TOKEN@host`) is used as the token unless `token` is given.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let mut base = url::Url::parse(&with_scheme).map_err(|e| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(ClientError::InvalidUrl {
                url: url.to_string(),
                reason: format!("scheme {:?} is not http or https", base.scheme()),
            });
        }
        let token = token
            .filter(|t| !t.is_empty())
            .or_else(|| base.password().map(str::to_string));
        // Credentials travel in the Authorization header, never in the logged URL.
        let _ = base.set_password(None);
        let _ = base.set_username("");
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("dray-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Client { base, token, http })
    }

    /// The rack URL, without credentials.
    pub fn url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{}", self.url(), path);
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| self.connect_error(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| {
                let t = text.trim();
                if t.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("request failed")
                        .to_lowercase()
                } else {
                    t.to_string()
                }
            });
        Err(ClientError::Api {
            status: status.as_u16(),
            message,
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let bytes = resp.bytes().await.map_err(|e| self.connect_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(),
            reason: e.to_string(),
        })
    }

    fn connect_error(&self, e: &reqwest::Error) -> ClientError {
        // The innermost cause is the one a person can act on ("connection refused").
        let mut reason = e.to_string();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        if let Some(i) = reason.find(" (os error") {
            reason.truncate(i);
        }
        let reason = lowercase_first(&reason);
        ClientError::Connect {
            url: self.url(),
            reason,
        }
    }

    /// `GET /health` (no token needed).
    pub async fn health(&self) -> Result<(), ClientError> {
        self.send(self.request(Method::GET, "/health")).await?;
        Ok(())
    }

    /// `GET /auth`: succeeds when the token is accepted.
    pub async fn auth(&self) -> Result<(), ClientError> {
        self.send(self.request(Method::GET, "/auth")).await?;
        Ok(())
    }

    /// `GET /system`.
    pub async fn system(&self) -> Result<System, ClientError> {
        self.json(self.request(Method::GET, "/system")).await
    }

    /// `GET /apps`.
    pub async fn apps(&self) -> Result<Vec<App>, ClientError> {
        self.json(self.request(Method::GET, "/apps")).await
    }

    /// `GET /apps/{app}`.
    pub async fn app(&self, app: &str) -> Result<App, ClientError> {
        self.json(self.request(Method::GET, &format!("/apps/{}", seg(app))))
            .await
    }

    /// `POST /apps`.
    pub async fn app_create(&self, name: &str) -> Result<App, ClientError> {
        let req = self
            .request(Method::POST, "/apps")
            .form(&[("name", name), ("generation", "3")]);
        self.json(req).await
    }

    /// `DELETE /apps/{app}`.
    pub async fn app_delete(&self, app: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("/apps/{}", seg(app))))
            .await?;
        Ok(())
    }

    /// `PUT /apps/{app}` with `lock`.
    pub async fn app_lock(&self, app: &str, lock: bool) -> Result<App, ClientError> {
        let req = self
            .request(Method::PUT, &format!("/apps/{}", seg(app)))
            .form(&[("lock", if lock { "true" } else { "false" })]);
        self.json(req).await
    }

    /// `POST /apps/{app}/cancel`.
    pub async fn app_cancel(&self, app: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::POST, &format!("/apps/{}/cancel", seg(app))))
            .await?;
        Ok(())
    }

    /// `GET /apps/{app}/releases?limit=N`, newest first.
    pub async fn releases(
        &self,
        app: &str,
        limit: Option<u32>,
    ) -> Result<Vec<Release>, ClientError> {
        let mut req = self.request(Method::GET, &format!("/apps/{}/releases", seg(app)));
        if let Some(l) = limit {
            req = req.query(&[("limit", l)]);
        }
        self.json(req).await
    }

    /// `GET /apps/{app}/releases/{id}`.
    pub async fn release(&self, app: &str, id: &str) -> Result<Release, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("/apps/{}/releases/{}", seg(app), seg(id)),
        ))
        .await
    }

    /// `POST /apps/{app}/releases`.
    pub async fn release_create(
        &self,
        app: &str,
        opts: &ReleaseCreate,
    ) -> Result<Release, ClientError> {
        let mut form: Vec<(&str, &str)> = Vec::new();
        if let Some(v) = &opts.build {
            form.push(("build", v));
        }
        if let Some(v) = &opts.env {
            form.push(("env", v));
        }
        if let Some(v) = &opts.description {
            form.push(("description", v));
        }
        if let Some(v) = &opts.parent_release {
            form.push(("parent-release", v));
        }
        let req = self
            .request(Method::POST, &format!("/apps/{}/releases", seg(app)))
            .form(&form);
        self.json(req).await
    }

    /// `GET /apps/{app}/builds?limit=N`, newest first.
    pub async fn builds(&self, app: &str, limit: Option<u32>) -> Result<Vec<Build>, ClientError> {
        let mut req = self.request(Method::GET, &format!("/apps/{}/builds", seg(app)));
        if let Some(l) = limit {
            req = req.query(&[("limit", l)]);
        }
        self.json(req).await
    }

    /// `GET /apps/{app}/builds/{id}`.
    pub async fn build(&self, app: &str, id: &str) -> Result<Build, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("/apps/{}/builds/{}", seg(app), seg(id)),
        ))
        .await
    }

    /// `POST /apps/{app}/objects/{key}` with a file's bytes streamed as the body; returns the
    /// `object://app/key` URL.
    pub async fn object_store_file(
        &self,
        app: &str,
        key: &str,
        path: &std::path::Path,
    ) -> Result<String, ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::InvalidUrl {
                url: path.display().to_string(),
                reason: format!("cannot read the file: {e}"),
            })?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let key_path: String = key.split('/').map(seg).collect::<Vec<_>>().join("/");
        let req = self
            .request(
                Method::POST,
                &format!("/apps/{}/objects/{}", seg(app), key_path),
            )
            .header("content-type", "application/octet-stream")
            .body(body);
        let v: serde_json::Value = self.json(req).await?;
        Ok(v["Url"].as_str().unwrap_or_default().to_string())
    }

    /// `POST /apps/{app}/releases/{id}/promote`: start deploying a release (poll [`Client::app`]
    /// until its status is `running`).
    pub async fn promote(
        &self,
        app: &str,
        id: &str,
        force: bool,
        timeout: Option<u64>,
    ) -> Result<(), ClientError> {
        let mut form: Vec<(&str, String)> = vec![("force", force.to_string())];
        if let Some(t) = timeout {
            form.push(("timeout", t.to_string()));
        }
        let req = self
            .request(
                Method::POST,
                &format!("/apps/{}/releases/{}/promote", seg(app), seg(id)),
            )
            .form(&form);
        self.send(req).await?;
        Ok(())
    }

    /// `GET /apps/{app}/processes`.
    pub async fn processes(
        &self,
        app: &str,
        service: Option<&str>,
    ) -> Result<Vec<Process>, ClientError> {
        let mut req = self.request(Method::GET, &format!("/apps/{}/processes", seg(app)));
        if let Some(s) = service {
            req = req.query(&[("service", s)]);
        }
        self.json(req).await
    }

    /// `GET /apps/{app}/processes/{pid}`.
    pub async fn process(&self, app: &str, pid: &str) -> Result<Process, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("/apps/{}/processes/{}", seg(app), seg(pid)),
        ))
        .await
    }

    /// `DELETE /apps/{app}/processes/{pid}`.
    pub async fn process_stop(&self, app: &str, pid: &str) -> Result<(), ClientError> {
        self.send(self.request(
            Method::DELETE,
            &format!("/apps/{}/processes/{}", seg(app), seg(pid)),
        ))
        .await?;
        Ok(())
    }

    /// `GET /apps/{app}/endpoints`: every service process with its address, port, health and
    /// draining state.
    pub async fn endpoints(&self, app: &str) -> Result<Vec<Endpoint>, ClientError> {
        self.json(self.request(Method::GET, &format!("/apps/{}/endpoints", seg(app))))
            .await
    }

    /// `GET /apps/{app}/services`.
    pub async fn services(&self, app: &str) -> Result<Vec<Service>, ClientError> {
        self.json(self.request(Method::GET, &format!("/apps/{}/services", seg(app))))
            .await
    }

    /// `PUT /apps/{app}/services/{service}`: change count, cpu (millicores) or memory (MB).
    pub async fn scale(
        &self,
        app: &str,
        service: &str,
        count: Option<u32>,
        cpu: Option<u64>,
        memory: Option<u64>,
    ) -> Result<Service, ClientError> {
        let mut form: Vec<(&str, String)> = Vec::new();
        if let Some(v) = count {
            form.push(("count", v.to_string()));
        }
        if let Some(v) = cpu {
            form.push(("cpu", v.to_string()));
        }
        if let Some(v) = memory {
            form.push(("memory", v.to_string()));
        }
        let req = self
            .request(
                Method::PUT,
                &format!("/apps/{}/services/{}", seg(app), seg(service)),
            )
            .form(&form);
        self.json(req).await
    }

    /// `POST /apps/{app}/services/{service}/restart`, or `/apps/{app}/restart` for every service.
    pub async fn restart(&self, app: &str, service: Option<&str>) -> Result<(), ClientError> {
        let path = match service {
            Some(s) => format!("/apps/{}/services/{}/restart", seg(app), seg(s)),
            None => format!("/apps/{}/restart", seg(app)),
        };
        self.send(self.request(Method::POST, &path)).await?;
        Ok(())
    }

    /// Upload an OCI image archive and create a build (and release) from it.
    pub async fn build_import_image(
        &self,
        app: &str,
        archive: &std::path::Path,
        manifest: &str,
        description: Option<&str>,
    ) -> Result<(Build, Release), ClientError> {
        let key = format!("tmp/import-{}.tar", unique_suffix());
        self.object_store_file(app, &key, archive).await?;
        let mut form: Vec<(&str, &str)> = vec![("object", &key), ("manifest", manifest)];
        if let Some(d) = description {
            form.push(("description", d));
        }
        let req = self
            .request(
                Method::POST,
                &format!("/apps/{}/builds/import-image", seg(app)),
            )
            .form(&form);
        #[derive(serde::Deserialize)]
        struct Reply {
            build: Build,
            release: Release,
        }
        let r: Reply = self.json(req).await?;
        Ok((r.build, r.release))
    }

    /// `GET /images`.
    pub async fn images(&self) -> Result<Vec<Image>, ClientError> {
        self.json(self.request(Method::GET, "/images")).await
    }

    /// `POST /images`: import an OCI image archive (streamed).
    pub async fn images_import(
        &self,
        archive: &std::path::Path,
        name: Option<&str>,
    ) -> Result<Vec<Image>, ClientError> {
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| ClientError::InvalidUrl {
                url: archive.display().to_string(),
                reason: format!("cannot read the file: {e}"),
            })?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let mut req = self
            .request(Method::POST, "/images")
            .header("content-type", "application/x-tar")
            .body(body);
        if let Some(n) = name {
            req = req.query(&[("name", n)]);
        }
        self.json(req).await
    }

    /// `GET /plugins`: every installed plugin, by name.
    pub async fn plugins(&self) -> Result<Vec<Plugin>, ClientError> {
        self.json(self.request(Method::GET, "/plugins")).await
    }

    /// `GET /plugins/{name}`.
    pub async fn plugin(&self, name: &str) -> Result<Plugin, ClientError> {
        self.json(self.request(Method::GET, &format!("/plugins/{}", seg(name))))
            .await
    }

    /// `POST /plugins`: install a plugin from its `.wasm` bytes.
    pub async fn plugin_install(&self, wasm: Vec<u8>) -> Result<Plugin, ClientError> {
        self.plugin_install_with(wasm, false, &[]).await
    }

    /// `POST /plugins` granting outbound network access and directories (`HOST:GUEST[:ro]`).
    pub async fn plugin_install_with(
        &self,
        wasm: Vec<u8>,
        network: bool,
        dirs: &[String],
    ) -> Result<Plugin, ClientError> {
        let mut q: Vec<(&str, &str)> = dirs.iter().map(|d| ("dir", d.as_str())).collect();
        if network {
            q.push(("network", "true"));
        }
        self.json(
            self.request(Method::POST, "/plugins")
                .query(&q)
                .header("content-type", "application/wasm")
                .body(wasm),
        )
        .await
    }

    /// `PUT /plugins`: replace the installed plugin this component names with it.
    pub async fn plugin_upgrade(&self, wasm: Vec<u8>) -> Result<Plugin, ClientError> {
        self.json(
            self.request(Method::PUT, "/plugins")
                .header("content-type", "application/wasm")
                .body(wasm),
        )
        .await
    }

    /// `PUT /plugins/{name}`: replace plugin `name` with a new build of it (refused when the
    /// component is another plugin).
    pub async fn plugin_upgrade_named(
        &self,
        name: &str,
        wasm: Vec<u8>,
    ) -> Result<Plugin, ClientError> {
        self.json(
            self.request(Method::PUT, &format!("/plugins/{}", seg(name)))
                .header("content-type", "application/wasm")
                .body(wasm),
        )
        .await
    }

    /// `DELETE /plugins/{name}`: remove a plugin (refused while resources use it). Returns
    /// what was removed.
    pub async fn plugin_remove(&self, name: &str) -> Result<Plugin, ClientError> {
        self.json(self.request(Method::DELETE, &format!("/plugins/{}", seg(name))))
            .await
    }

    /// `GET /apps/{app}/logs`: the response, whose body is a stream of text lines.
    pub async fn logs(
        &self,
        app: &str,
        opts: &LogsOptions,
    ) -> Result<reqwest::Response, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("follow", opts.follow.to_string())];
        if let Some(s) = &opts.service {
            q.push(("service", s.clone()));
        }
        if let Some(s) = &opts.since {
            q.push(("since", s.clone()));
        }
        if let Some(t) = opts.tail {
            q.push(("tail", t.to_string()));
        }
        if let Some(f) = &opts.filter {
            q.push(("filter", f.clone()));
        }
        let req = self
            .request(Method::GET, &format!("/apps/{}/logs", seg(app)))
            .query(&q);
        self.send(req).await
    }

    /// `POST /apps/{app}/services/{service}/processes`: start a one-off process.
    pub async fn run(
        &self,
        app: &str,
        service: &str,
        command: Option<&str>,
        release: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Process, ClientError> {
        let env_text: String = env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut form: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = command {
            form.push(("command", c));
        }
        if let Some(r) = release {
            form.push(("release", r));
        }
        if !env_text.is_empty() {
            form.push(("environment", &env_text));
        }
        let req = self
            .request(
                Method::POST,
                &format!("/apps/{}/services/{}/processes", seg(app), seg(service)),
            )
            .form(&form);
        self.json(req).await
    }

    /// Open an exec WebSocket on a process (or a running process of a service). Errors (no such
    /// process, bad command) arrive before the socket opens. See the agent's exec protocol:
    /// binary frames carry stdin (client) and `[stream, bytes...]` output (server), the server
    /// ends with a text frame `{"exit":CODE}`.
    pub async fn exec_socket(
        &self,
        app: &str,
        pid: &str,
        command: &str,
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<ExecSocket, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("command", command);
        q.append_pair("tty", if tty { "true" } else { "false" });
        if let Some((w, h)) = size {
            q.append_pair("width", &w.to_string());
            q.append_pair("height", &h.to_string());
        }
        self.socket(&format!(
            "/apps/{}/processes/{}/exec?{}",
            seg(app),
            seg(pid),
            q.finish()
        ))
        .await
    }

    /// Open a data session on a resource, speaking the exec protocol: `op` is `export` (the
    /// dump arrives as stdout frames), `import` (send the dump as stdin frames, then an empty
    /// frame) or `console` (with a TTY of `size` when `tty`; without one for piped input).
    pub async fn resource_socket(
        &self,
        app: &str,
        resource: &str,
        op: &str,
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<ExecSocket, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let path = if op == "console" {
            q.append_pair("tty", if tty { "true" } else { "false" });
            if let Some((w, h)) = size {
                q.append_pair("width", &w.to_string());
                q.append_pair("height", &h.to_string());
            }
            format!("/apps/{}/resources/{}/console", seg(app), seg(resource))
        } else {
            q.append_pair("op", op);
            format!("/apps/{}/resources/{}/data", seg(app), seg(resource))
        };
        self.socket(&format!("{path}?{}", q.finish())).await
    }

    /// Open a WebSocket on `path_and_query`; an error reply before the upgrade becomes
    /// [`ClientError::Api`].
    async fn socket(&self, path_and_query: &str) -> Result<ExecSocket, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let base = self.url();
        let ws_base = base
            .strip_prefix("https://")
            .map(|r| format!("wss://{r}"))
            .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
            .unwrap_or(base.clone());
        let url = format!("{ws_base}{path_and_query}");
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::InvalidUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if let Some(t) = &self.token {
            if let Ok(v) = format!("Bearer {t}").parse() {
                req.headers_mut().insert("authorization", v);
            }
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ExecSocket { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().clone().unwrap_or_default();
                let message = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
                Err(ClientError::Api { status, message })
            }
            Err(e) => Err(ClientError::Connect {
                url: base,
                reason: lowercase_first(&e.to_string()),
            }),
        }
    }

    /// An app's resources.
    pub async fn resources(&self, app: &str) -> Result<Vec<Resource>, ClientError> {
        self.json(self.request(Method::GET, &format!("/apps/{}/resources", seg(app))))
            .await
    }

    /// One resource of an app.
    pub async fn resource(&self, app: &str, name: &str) -> Result<Resource, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("/apps/{}/resources/{}", seg(app), seg(name)),
        ))
        .await
    }

    /// What a resource's plugin plans now (nothing is changed).
    pub async fn resource_plan(
        &self,
        app: &str,
        name: &str,
    ) -> Result<serde_json::Value, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("/apps/{}/resources/{}/plan", seg(app), seg(name)),
        ))
        .await
    }

    /// Any `GET` returning JSON, for `dray api get PATH`.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        self.json(self.request(Method::GET, &path)).await
    }

    /// Whether an error means "not found" (HTTP 404).
    pub fn is_not_found(e: &ClientError) -> bool {
        e.status() == Some(StatusCode::NOT_FOUND.as_u16())
    }
}

/// An open exec session (see [`Client::exec_socket`]).
pub struct ExecSocket {
    /// The WebSocket.
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// Options of [`Client::logs`].
#[derive(Clone, Debug, Default)]
pub struct LogsOptions {
    pub service: Option<String>,
    /// A duration (`2m`) or an RFC3339 time.
    pub since: Option<String>,
    pub tail: Option<usize>,
    pub filter: Option<String>,
    pub follow: bool,
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{}", nanos, std::process::id())
}

/// Percent-encode one path segment.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
