//! The [`Host`] abstraction over the agent's `host` interface.
//!
//! Owns the trait plugin logic is written against and [`WasmHost`], the
//! implementation that calls the real imports. It must never hold state of
//! its own: persistent state lives in the agent, behind `state-*`.

use crate::{Error, LogLevel, StateError};

/// What the agent offers a plugin: logs, persistent key/value state and
/// random secrets. Write plugin logic against `&dyn Host` so it runs both in
/// the agent ([`WasmHost`]) and in native unit tests ([`crate::FakeHost`]).
pub trait Host {
    /// Write a log line (tagged with the plugin's name by the agent).
    fn log(&self, level: LogLevel, message: &str);

    /// Read a key of the plugin's persistent state.
    fn state_get(&self, key: &str) -> Result<Option<String>, StateError>;

    /// Write a key of the plugin's persistent state.
    fn state_set(&self, key: &str, value: &str) -> Result<(), StateError>;

    /// Delete a key of the plugin's persistent state (absent keys are fine).
    fn state_delete(&self, key: &str) -> Result<(), StateError>;

    /// A fresh random `[A-Za-z0-9]` secret of `length` characters (clamped
    /// to 8..=256 by the agent).
    fn random_secret(&self, length: u32) -> String;

    /// Log at `info` level.
    fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// Log at `warn` level.
    fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// The secret stored under `key`, generating and storing a new one of
    /// `length` characters the first time. Use it for credentials that must
    /// stay the same across plans (a database password).
    fn secret_once(&self, key: &str, length: u32) -> Result<String, Error> {
        if let Some(existing) = self.state_get(key).map_err(state_error)? {
            return Ok(existing);
        }
        let secret = self.random_secret(length);
        self.state_set(key, &secret).map_err(state_error)?;
        Ok(secret)
    }
}

/// Turn a state failure into a plugin [`Error`]: `unavailable` becomes
/// `not-ready` (the agent retries), the rest `other`.
pub(crate) fn state_error(e: StateError) -> Error {
    match e {
        StateError::Unavailable(m) => Error::NotReady(format!("plugin state unavailable: {m}")),
        StateError::TooLarge(m) => Error::Other(format!("plugin state: {m}")),
        StateError::Other(m) => Error::Other(format!("plugin state: {m}")),
    }
}

/// The [`Host`] backed by the agent's real `host` imports. Only usable inside
/// a component running in the agent; on native targets every call panics
/// (use [`crate::FakeHost`] in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

#[cfg(target_arch = "wasm32")]
impl Host for WasmHost {
    fn log(&self, level: LogLevel, message: &str) {
        crate::bindings::resource::dray::plugin::host::log(level, message);
    }

    fn state_get(&self, key: &str) -> Result<Option<String>, StateError> {
        crate::bindings::resource::dray::plugin::host::state_get(key)
    }

    fn state_set(&self, key: &str, value: &str) -> Result<(), StateError> {
        crate::bindings::resource::dray::plugin::host::state_set(key, value)
    }

    fn state_delete(&self, key: &str) -> Result<(), StateError> {
        crate::bindings::resource::dray::plugin::host::state_delete(key)
    }

    fn random_secret(&self, length: u32) -> String {
        crate::bindings::resource::dray::plugin::host::random_secret(length)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Host for WasmHost {
    fn log(&self, _level: LogLevel, _message: &str) {
        panic!("WasmHost only works inside a component; use FakeHost in native tests");
    }

    fn state_get(&self, _key: &str) -> Result<Option<String>, StateError> {
        panic!("WasmHost only works inside a component; use FakeHost in native tests");
    }

    fn state_set(&self, _key: &str, _value: &str) -> Result<(), StateError> {
        panic!("WasmHost only works inside a component; use FakeHost in native tests");
    }

    fn state_delete(&self, _key: &str) -> Result<(), StateError> {
        panic!("WasmHost only works inside a component; use FakeHost in native tests");
    }

    fn random_secret(&self, _length: u32) -> String {
        panic!("WasmHost only works inside a component; use FakeHost in native tests");
    }
}
