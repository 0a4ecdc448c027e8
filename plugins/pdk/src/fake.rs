//! [`FakeHost`]: an in-memory [`Host`] for native unit tests of plugin logic.
//!
//! Owns nothing but test state. It must never be used inside a component.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use crate::{Host, LogLevel, StateError};

/// An in-memory [`Host`]: state in a map, log lines recorded, secrets
/// deterministic (`secret1aaaa...`, `secret2aaaa...`) so tests can assert on
/// them. Can simulate an unavailable state store.
#[derive(Debug, Default)]
pub struct FakeHost {
    state: RefCell<BTreeMap<String, String>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    secrets: Cell<u32>,
    unavailable: Cell<bool>,
}

impl FakeHost {
    /// An empty fake host.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the whole plugin state.
    pub fn state(&self) -> BTreeMap<String, String> {
        self.state.borrow().clone()
    }

    /// Every log line written so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    /// How many secrets were generated.
    pub fn secrets_generated(&self) -> u32 {
        self.secrets.get()
    }

    /// Make every state operation fail with `unavailable` (or work again).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.set(unavailable);
    }

    fn check(&self) -> Result<(), StateError> {
        if self.unavailable.get() {
            Err(StateError::Unavailable(
                "fake host: state store down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl Host for FakeHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn state_get(&self, key: &str) -> Result<Option<String>, StateError> {
        self.check()?;
        Ok(self.state.borrow().get(key).cloned())
    }

    fn state_set(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.check()?;
        self.state
            .borrow_mut()
            .insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn state_delete(&self, key: &str) -> Result<(), StateError> {
        self.check()?;
        self.state.borrow_mut().remove(key);
        Ok(())
    }

    fn random_secret(&self, length: u32) -> String {
        let n = self.secrets.get() + 1;
        self.secrets.set(n);
        let length = length.clamp(8, 256) as usize;
        let mut s = format!("secret{n}");
        while s.len() < length {
            s.push('a');
        }
        s.truncate(length);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_once_is_stable_and_stored() {
        let host = FakeHost::new();
        let a = host.secret_once("pass", 16).unwrap();
        let b = host.secret_once("pass", 16).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert_eq!(host.secrets_generated(), 1);
        assert_eq!(host.state().get("pass"), Some(&a));
        let c = host.secret_once("other", 4).unwrap();
        assert_ne!(a, c);
        assert_eq!(c.len(), 8, "clamped to 8");
    }

    #[test]
    fn unavailable_state_becomes_not_ready() {
        let host = FakeHost::new();
        host.set_unavailable(true);
        let err = host.secret_once("pass", 16).unwrap_err();
        assert!(matches!(err, crate::Error::NotReady(_)), "{err:?}");
    }
}
