//! Environment text: validation of `KEY=VALUE` lines and the release description of a change.

use std::collections::BTreeMap;

use dray_sdk::Environment;

use super::Error;

/// Whether `key` is an acceptable environment variable name.
fn key_ok(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Parse and validate release env text (`KEY=VALUE` lines). Blank lines are ignored; anything
/// else that is not `KEY=VALUE` with a valid key is refused, naming the line.
pub fn parse_env_text(text: &str) -> Result<Environment, Error> {
    let mut env = BTreeMap::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::BadRequest(format!(
                "env line {}: {:?} is not KEY=VALUE",
                n + 1,
                truncate(line)
            )));
        };
        let key = key.trim();
        if !key_ok(key) {
            return Err(Error::BadRequest(format!(
                "env line {}: invalid key {:?}: keys start with a letter or _ and contain only letters, digits, _, . and -",
                n + 1,
                truncate(key)
            )));
        }
        env.insert(key.to_string(), value.to_string());
    }
    Ok(Environment(env))
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Convox's release description for an env change: `env add:A,B change:C remove:D`.
pub fn env_diff(old: &Environment, new: &Environment) -> String {
    let add: Vec<&str> = new
        .0
        .keys()
        .filter(|k| !old.0.contains_key(*k))
        .map(String::as_str)
        .collect();
    let change: Vec<&str> = new
        .0
        .iter()
        .filter(|(k, v)| old.0.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    let remove: Vec<&str> = old
        .0
        .keys()
        .filter(|k| !new.0.contains_key(*k))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    if !add.is_empty() {
        parts.push(format!("add:{}", add.join(",")));
    }
    if !change.is_empty() {
        parts.push(format!("change:{}", change.join(",")));
    }
    if !remove.is_empty() {
        parts.push(format!("remove:{}", remove.join(",")));
    }
    if parts.is_empty() {
        "env unchanged".to_string()
    } else {
        format!("env {}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_added_changed_and_removed_keys() {
        let old = Environment::parse("A=1\nB=2\nC=3");
        let new = Environment::parse("A=1\nB=9\nD=4\nE=5");
        assert_eq!(env_diff(&old, &new), "env add:D,E change:B remove:C");
        assert_eq!(env_diff(&old, &old), "env unchanged");
    }

    #[test]
    fn env_text_is_validated_line_by_line() {
        let env = parse_env_text("A=x=y\n\nB=\r\n").unwrap();
        assert_eq!(env.0["A"], "x=y");
        assert_eq!(env.0["B"], "");
        let e = parse_env_text("A=1\nnot a pair").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_env_text("1A=1").unwrap_err().to_string();
        assert!(e.contains("invalid key"), "{e}");
    }
}
