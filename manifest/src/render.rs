//! Printing a normalized manifest as YAML (like `docker compose config`) or JSON.
//!
//! The YAML is block style with two-space indents, keys in declaration order, and strings quoted
//! only when YAML 1.1 would read them as something else (`yes`, `3000`, `*/5 * * * *`, …), so the
//! output loads back, in Dray and in Convox, to the same manifest. This module must never change
//! values; it only prints what `Manifest` serializes to.

use crate::model::Manifest;
use crate::yaml::{resolve_plain, Value};
use serde_json::Value as J;

impl Manifest {
    /// The normalized manifest as YAML.
    pub fn to_yaml(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(J::Null);
        let mut out = String::new();
        match &v {
            J::Object(m) if !m.is_empty() => emit_map(m, 0, &mut out),
            _ => out.push_str("{}\n"),
        }
        out
    }

    /// The normalized manifest as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

fn needs_quotes(s: &str, key: bool) -> bool {
    if s.is_empty() || s.trim() != s {
        return true;
    }
    match resolve_plain(s) {
        Value::Str(_) => {}
        Value::Int(_) | Value::Float(_) if key => {}
        _ => return true,
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-x`, `?x` and `:x` are fine as plain scalars, but keep it simple and safe.
        return true;
    }
    s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s == "<<"
        || s.chars().any(|c| c.is_control())
        || (key && (s.contains(['[', ']', '{', '}', ',']) || s.contains('#')))
}

fn scalar(s: &str, key: bool) -> String {
    if needs_quotes(s, key) {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    } else {
        s.to_string()
    }
}

fn inline(v: &J) -> Option<String> {
    match v {
        J::Null => Some("null".into()),
        J::Bool(b) => Some(b.to_string()),
        J::Number(n) => Some(n.to_string()),
        J::String(s) => Some(scalar(s, false)),
        J::Array(a) if a.is_empty() => Some("[]".into()),
        J::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn emit_map(m: &serde_json::Map<String, J>, indent: usize, out: &mut String) {
    for (i, (k, v)) in m.iter().enumerate() {
        // the first key of a list item map is already indented by "- "
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push_str(&scalar(k, true));
        out.push(':');
        emit_value(v, indent, out);
    }
}

/// Emit a value after `key:` (the key line is already written, without its newline).
fn emit_value(v: &J, indent: usize, out: &mut String) {
    if let Some(s) = inline(v) {
        out.push(' ');
        out.push_str(&s);
        out.push('\n');
        return;
    }
    out.push('\n');
    match v {
        J::Object(m) => emit_map(m, indent + 2, out),
        J::Array(a) => emit_seq(a, indent + 2, out),
        _ => {}
    }
}

fn emit_seq(a: &[J], indent: usize, out: &mut String) {
    for item in a {
        pad(out, indent);
        out.push_str("- ");
        if let Some(s) = inline(item) {
            out.push_str(&s);
            out.push('\n');
            continue;
        }
        match item {
            J::Object(m) => emit_map(m, indent + 2, out),
            J::Array(inner) => {
                out.push('\n');
                emit_seq(inner, indent + 2, out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        for s in [
            "yes",
            "3000",
            "",
            "*/5 * * * *",
            "a: b",
            "null",
            "~",
            "1.5",
            " x",
            "<<",
            "@daily",
        ] {
            assert!(needs_quotes(s, false), "{s:?}");
        }
        for s in [
            "web",
            "https",
            "bin/web --port 3000",
            "example.org",
            "/",
            "FOO=bar",
            "2160h",
        ] {
            assert!(!needs_quotes(s, false), "{s:?}");
        }
        assert!(!needs_quotes("5000", true));
        assert!(needs_quotes("yes", true));
    }

    #[test]
    fn emits_nested() {
        let v: J = serde_json::json!({"a": {"b": [1, {"c": "yes", "d": []}], "e": {}}, "f": "x"});
        let mut out = String::new();
        if let J::Object(m) = &v {
            emit_map(m, 0, &mut out);
        }
        assert_eq!(
            out,
            "a:\n  b:\n    - 1\n    - c: \"yes\"\n      d: []\n  e: {}\nf: x\n"
        );
    }
}
