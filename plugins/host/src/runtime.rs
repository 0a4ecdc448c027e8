//! The wasmtime side of the host: engine and linkers, per-store data, the
//! `host` interface implementation (log, state, secrets), the memory limiter
//! and the captured stderr of plugins.
//!
//! Owns everything a plugin can reach from inside its sandbox. It must never
//! grant a capability (filesystem, network) that the plugin's [`Grants`] do
//! not list, and never let a host function block for long.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::resource::dray::plugin::{host, types};
use crate::state::{PluginState, StateError, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// How often the epoch ticker increments the engine's epoch.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource limits applied to every plugin call and store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A call (or an instantiation) running longer is stopped. Default 5 s.
    pub call_timeout: Duration,
    /// The most linear memory one plugin instance may use. Default 64 MiB.
    pub memory_bytes: usize,
    /// Optional fuel (deterministic instruction budget) per call. `None`
    /// disables fuel metering (the default; epochs bound time).
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 64 * 1024 * 1024,
            fuel: None,
        }
    }
}

impl Limits {
    /// The epoch deadline (in ticks) matching `call_timeout`.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }
}

/// A directory a plugin may see (only if its installation grants it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen {
    /// The directory on the host.
    pub host_path: PathBuf,
    /// Where the plugin sees it.
    pub guest_path: String,
    /// Whether the plugin may only read.
    pub read_only: bool,
}

/// The capabilities an installation grants a plugin beyond the `host`
/// interface. The default grants nothing: no filesystem, no network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Directories the plugin may open.
    #[serde(default)]
    pub preopens: Vec<Preopen>,
    /// Outbound TCP/UDP and name lookups.
    #[serde(default)]
    pub network: bool,
}

/// Build the shared engine: epoch interruption always, fuel if asked.
pub(crate) fn engine(limits: &Limits) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(limits.fuel.is_some());
    config.wasm_component_model(true);
    Engine::new(&config)
}

/// A linker for each world, with WASI p2 and the `host` interface.
pub(crate) struct Linkers {
    pub(crate) resource: Linker<StoreData>,
    pub(crate) balancer: Linker<StoreData>,
}

pub(crate) fn linkers(engine: &Engine) -> wasmtime::Result<Linkers> {
    let mut resource = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut resource)?;
    crate::bindings::resource::ResourcePlugin::add_to_linker::<_, HasSelf<_>>(
        &mut resource,
        |s| s,
    )?;
    let mut balancer = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut balancer)?;
    crate::bindings::balancer::BalancerPlugin::add_to_linker::<_, HasSelf<_>>(
        &mut balancer,
        |s| s,
    )?;
    Ok(Linkers { resource, balancer })
}

/// The data of one plugin store.
pub(crate) struct StoreData {
    /// The plugin's name; empty while installing (state is then refused).
    pub(crate) plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    state: Arc<dyn PluginState>,
    pub(crate) stderr: TailPipe,
}

impl StoreData {
    pub(crate) fn new(
        plugin: &str,
        grants: &Grants,
        limits: &Limits,
        state: Arc<dyn PluginState>,
    ) -> wasmtime::Result<Self> {
        let stderr = TailPipe::new(plugin);
        let mut b = WasiCtxBuilder::new();
        b.stdout(stderr.clone()).stderr(stderr.clone());
        b.allow_tcp(grants.network)
            .allow_udp(grants.network)
            .allow_ip_name_lookup(grants.network);
        if grants.network {
            b.inherit_network();
        }
        for p in &grants.preopens {
            let perms = if p.read_only {
                wasmtime_wasi::FsPerms::ReadOnly
            } else {
                wasmtime_wasi::FsPerms::ReadWrite
            };
            b.preopened_dir(&p.host_path, &p.guest_path, perms)?;
        }
        b.max_random_size(64 * 1024);
        Ok(Self {
            plugin: plugin.to_string(),
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max: limits.memory_bytes,
                exceeded: None,
            },
            state,
            stderr,
        })
    }

    fn check_state(&self, key: &str, value: Option<&str>) -> Result<(), host::StateError> {
        if self.plugin.is_empty() {
            return Err(host::StateError::Unavailable(
                "state is not available while the plugin is being installed".into(),
            ));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(host::StateError::TooLarge(format!(
                "key of {} bytes (limit {MAX_KEY_BYTES})",
                key.len()
            )));
        }
        if let Some(v) = value {
            if v.len() > MAX_VALUE_BYTES {
                return Err(host::StateError::TooLarge(format!(
                    "value of {} bytes (limit {MAX_VALUE_BYTES})",
                    v.len()
                )));
            }
        }
        Ok(())
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn to_wit(e: StateError) -> host::StateError {
    match e {
        StateError::TooLarge(m) => host::StateError::TooLarge(m),
        StateError::Unavailable(m) => host::StateError::Unavailable(m),
        StateError::Other(m) => host::StateError::Other(m),
    }
}

impl types::Host for StoreData {}

impl host::Host for StoreData {
    fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        let plugin = self.plugin.as_str();
        let message = truncate(&message, 16 * 1024);
        match level {
            types::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            types::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    fn state_get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, host::StateError>> {
        if let Err(e) = self.check_state(&key, None) {
            return Ok(Err(e));
        }
        Ok(self.state.get(&self.plugin, &key).map_err(to_wit))
    }

    fn state_set(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), host::StateError>> {
        if let Err(e) = self.check_state(&key, Some(&value)) {
            return Ok(Err(e));
        }
        Ok(self.state.set(&self.plugin, &key, &value).map_err(to_wit))
    }

    fn state_delete(&mut self, key: String) -> wasmtime::Result<Result<(), host::StateError>> {
        if let Err(e) = self.check_state(&key, None) {
            return Ok(Err(e));
        }
        Ok(self.state.delete(&self.plugin, &key).map_err(to_wit))
    }

    fn random_secret(&mut self, length: u32) -> wasmtime::Result<String> {
        random_secret(length).map_err(|e| wasmtime::format_err!("OS random generator failed: {e}"))
    }
}

/// A `[A-Za-z0-9]` secret of `length` (clamped to 8..=256) characters from
/// the OS random generator, without modulo bias.
pub fn random_secret(length: u32) -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let length = length.clamp(8, 256) as usize;
    let mut out = String::with_capacity(length);
    let mut buf = [0u8; 64];
    while out.len() < length {
        getrandom::fill(&mut buf)?;
        for b in buf {
            // 248 = 4 * 62: reject the top values to stay uniform.
            if b < 248 && out.len() < length {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Caps each linear memory of a store and remembers a refused growth, so the
/// host can report "memory limit exceeded" instead of a bare trap.
pub(crate) struct MemoryLimiter {
    max: usize,
    pub(crate) exceeded: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.exceeded = Some(desired);
            wasmtime::bail!(
                "memory limit exceeded: the plugin asked for {desired} bytes, the limit is {} bytes",
                self.max
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Where a plugin's stdout/stderr go: each line is logged (debug level,
/// tagged with the plugin), and the last few KiB are kept so a trap's
/// report can quote the plugin's panic message. Never fails a write.
#[derive(Clone)]
pub(crate) struct TailPipe {
    plugin: Arc<str>,
    inner: Arc<Mutex<TailInner>>,
}

#[derive(Default)]
struct TailInner {
    tail: VecDeque<u8>,
    line: Vec<u8>,
}

const TAIL_BYTES: usize = 4096;

impl TailPipe {
    fn new(plugin: &str) -> Self {
        Self {
            plugin: Arc::from(plugin),
            inner: Arc::default(),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock().expect("tail lock");
        for &b in bytes {
            if inner.tail.len() == TAIL_BYTES {
                inner.tail.pop_front();
            }
            inner.tail.push_back(b);
            if b == b'\n' {
                let line = std::mem::take(&mut inner.line);
                tracing::debug!(
                    plugin = &*self.plugin,
                    "stderr: {}",
                    String::from_utf8_lossy(&line)
                );
            } else if inner.line.len() < TAIL_BYTES {
                inner.line.push(b);
            }
        }
    }

    /// The last non-empty lines written (at most `TAIL_BYTES`), trimmed.
    pub(crate) fn last_lines(&self, lines: usize) -> Option<String> {
        let inner = self.inner.lock().expect("tail lock");
        let text: Vec<u8> = inner.tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&text);
        let picked: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        if picked.is_empty() {
            return None;
        }
        Some(picked[picked.len().saturating_sub(lines)..].join(" | "))
    }

    /// Forget captured output (after reporting it).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock().expect("tail lock");
        inner.tail.clear();
        inner.line.clear();
    }
}

impl wasmtime_wasi::cli::IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for TailPipe {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for TailPipe {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for TailPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for TailPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_alphanumeric() {
        let a = random_secret(32).unwrap();
        let b = random_secret(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(random_secret(1).unwrap().len(), 8);
        assert_eq!(random_secret(10_000).unwrap().len(), 256);
    }

    #[test]
    fn tail_keeps_last_lines() {
        let t = TailPipe::new("p");
        t.push(b"one\n\ntwo\nnote: run with `RUST_BACKTRACE=1`\n");
        assert_eq!(t.last_lines(2).as_deref(), Some("one | two"));
        t.clear();
        assert_eq!(t.last_lines(2), None);
    }
}
