//! From the YAML node tree to the model: every key of reference §3 with its shorthand forms, type
//! errors with positions, warnings (with "did you mean") for unknown keys, v2-only and deprecated keys.
//!
//! The decoder records what was *written* (for the defaults that depend on presence) and hands each
//! service to `defaults::service`. It owns the "what form may this key take" rules; it must never
//! apply cross-section rules (those are in `validate.rs`) and never panic on any input.

use crate::defaults::{self, Written};
use crate::diag::{Diags, Pos};
use crate::model::*;
use crate::names::*;
use crate::yaml::{Kind, Node, Value};
use indexmap::IndexMap;
use std::collections::HashMap;

/// Decoding state: the diagnostics and the positions of everything written.
pub(crate) struct Dec<'a> {
    pub d: &'a mut Diags,
    pub positions: HashMap<String, Pos>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The entries of a map after removing duplicate keys.
type Entries<'n> = Vec<(&'n str, &'n Node, &'n Node)>;

impl<'a> Dec<'a> {
    pub fn new(d: &'a mut Diags) -> Self {
        Dec {
            d,
            positions: HashMap::new(),
        }
    }

    fn type_err(&mut self, n: &Node, path: &str, expected: &str, hint: Option<String>) {
        let hint = hint.or_else(|| {
            Some(match expected {
                "an integer" => "write a whole number without quotes, for example `30`".to_string(),
                "a number" => "write a number without quotes, for example `70`".to_string(),
                "true or false" => "write `true` or `false`".to_string(),
                "a string" => "write a single value on the same line as the key".to_string(),
                "a list" => "write one `- item` per line under the key".to_string(),
                e => format!("write {e} here"),
            })
        });
        self.d.error(
            n.pos,
            format!("{path}: expected {expected}, found {}", n.describe()),
            hint,
        );
    }

    /// A map's entries, keyed by text. Duplicate keys warn (`strict` = error) and the last one wins,
    /// as in yaml.v2. Null gives no entries; anything else is a type error.
    fn entries<'n>(
        &mut self,
        n: &'n Node,
        path: &str,
        expected: &str,
        hint: Option<String>,
        strict: bool,
    ) -> Entries<'n> {
        let Some(map) = n.as_map() else {
            if !n.is_null() {
                self.type_err(n, path, expected, hint);
            }
            return Vec::new();
        };
        let mut out: Entries<'n> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (k, v) in map {
            let Some(key) = k.text() else {
                self.d.error(
                    k.pos,
                    format!("{path}: keys must be plain names, found {}", k.describe()),
                    Some("write `name: value`".into()),
                );
                continue;
            };
            if let Some(&i) = seen.get(key) {
                let first = out[i].1.pos;
                let what = if path.is_empty() {
                    format!("duplicate key `{key}`")
                } else {
                    format!("{path}: duplicate key `{key}`")
                };
                if strict {
                    self.d.error(
                        k.pos,
                        format!("{what} (first written at line {})", first.line),
                        Some(format!(
                            "rename one of the two `{key}` entries or remove one"
                        )),
                    );
                    continue;
                }
                self.d.warn(
                    k.pos,
                    format!(
                        "{what} (first written at line {}); the last one is used",
                        first.line
                    ),
                    Some(format!("remove one of the two `{key}` entries")),
                );
                out[i] = (key, k, v);
                continue;
            }
            seen.insert(key, out.len());
            out.push((key, k, v));
        }
        for (key, k, _) in &out {
            self.positions.insert(join(path, key), k.pos);
        }
        out
    }

    /// A settings map (`strict` = false).
    fn fields<'n>(&mut self, n: &'n Node, path: &str, expected: &str) -> Entries<'n> {
        self.entries(n, path, expected, None, false)
    }

    fn unknown(&mut self, key: &Node, name: &str, path: &str, known: &[&str]) {
        let hint = suggest(name, known.iter().copied())
            .map(|s| format!("did you mean `{s}`?"))
            .or_else(|| Some(format!("known keys here: {}", known.join(", "))));
        self.d.warn(
            key.pos,
            format!("{}: unknown key `{name}`, ignored", path_or_top(path)),
            hint,
        );
    }

    /// Any scalar as its text (yaml.v2 stores a scalar's text into a string field). Null → `None`.
    fn string(&mut self, n: &Node, path: &str) -> Option<String> {
        match n.value() {
            Some(Value::Null) => None,
            Some(_) => n.text().map(str::to_string),
            None => {
                self.type_err(n, path, "a string", None);
                None
            }
        }
    }

    fn int(&mut self, n: &Node, path: &str) -> Option<i64> {
        match n.value() {
            Some(Value::Null) => None,
            Some(Value::Int(i)) => Some(i),
            Some(Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            Some(Value::Str(s)) if s.trim().parse::<i64>().is_ok() => {
                self.type_err(
                    n,
                    path,
                    "an integer",
                    Some(format!("remove the quotes: `{}`", s.trim())),
                );
                None
            }
            _ => {
                self.type_err(n, path, "an integer", None);
                None
            }
        }
    }

    fn float(&mut self, n: &Node, path: &str) -> Option<f64> {
        match n.value() {
            Some(Value::Null) => None,
            Some(Value::Int(i)) => Some(i as f64),
            Some(Value::Float(f)) => Some(f),
            _ => {
                self.type_err(n, path, "a number", None);
                None
            }
        }
    }

    fn boolean(&mut self, n: &Node, path: &str) -> Option<bool> {
        match n.value() {
            Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(Value::Str(s)) if matches!(s, "true" | "false" | "yes" | "no") => {
                self.type_err(
                    n,
                    path,
                    "true or false",
                    Some(format!("remove the quotes: `{s}`")),
                );
                None
            }
            _ => {
                self.type_err(n, path, "true or false", None);
                None
            }
        }
    }

    /// A list of scalars, as strings. Null → empty.
    fn strings(&mut self, n: &Node, path: &str) -> Vec<String> {
        let Some(items) = n.as_seq() else {
            if !n.is_null() {
                self.type_err(
                    n,
                    path,
                    "a list",
                    Some(format!(
                        "write each entry on its own line: `- {}`",
                        n.text().unwrap_or("value")
                    )),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = idx(path, i);
            self.positions.insert(p.clone(), item.pos);
            if let Some(s) = self.string(item, &p) {
                out.push(s);
            }
        }
        out
    }

    /// A map of scalars, as strings (null values become empty strings).
    fn string_map(&mut self, n: &Node, path: &str) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        for (key, _, v) in self.fields(n, path, "a map of `key: value`") {
            let p = join(path, key);
            let s = if v.is_null() {
                Some(String::new())
            } else {
                self.string(v, &p)
            };
            if let Some(s) = s {
                out.insert(key.to_string(), s);
            }
        }
        out
    }

    /// `["k=v", …]` or a list of `{k: v}` maps (annotations).
    fn kv_list(&mut self, n: &Node, path: &str) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        let Some(items) = n.as_seq() else {
            if !n.is_null() {
                self.type_err(
                    n,
                    path,
                    "a list of \"key=value\"",
                    Some("write `- key=value` entries".into()),
                );
            }
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let p = idx(path, i);
            self.positions.insert(p.clone(), item.pos);
            match &item.kind {
                Kind::Map(_) => {
                    for (k, v) in self.string_map(item, &p) {
                        out.insert(k, v);
                    }
                }
                Kind::Scalar(_) if !item.is_null() => {
                    let text = item.text().unwrap_or_default();
                    match text.split_once('=') {
                        Some((k, v)) => {
                            out.insert(k.to_string(), v.to_string());
                        }
                        None => self.d.error(
                            item.pos,
                            format!("invalid annotation format: {text}"),
                            Some(format!("write `- {text}=value`")),
                        ),
                    }
                }
                _ => self.type_err(item, &p, "\"key=value\"", None),
            }
        }
        out
    }

    fn raw(&mut self, n: &Node) -> Raw {
        n.to_json()
    }
}

fn path_or_top(path: &str) -> &str {
    if path.is_empty() {
        "convox.yml"
    } else {
        path
    }
}

/// Decode the whole manifest. `root` is `None` for an empty file.
pub(crate) fn manifest(root: Option<&Node>, dec: &mut Dec) -> Manifest {
    let mut m = Manifest::default();
    let Some(root) = root else {
        return m;
    };
    if root.as_map().is_none() {
        if !root.is_null() {
            dec.d.error(
                root.pos,
                format!(
                    "the manifest must be a map of top-level keys (services:, resources:, timers:, …), found {}",
                    root.describe()
                ),
                Some("start the file with `services:`".into()),
            );
        }
        return m;
    }
    let mut top_env_pos = Vec::new();
    for (key, k, v) in dec.fields(root, "", "a map") {
        match key {
            "environment" => {
                let (env, pos) = env_list(dec, v, "environment");
                m.environment = env;
                top_env_pos = pos;
            }
            "params" => m.params = dec.string_map(v, "params"),
            "labels" => m.labels = labels(dec, v, "labels"),
            "resources" => {
                for (name, rk, rv) in named(dec, v, "resources", "resource") {
                    let mut r = resource(dec, rv, &join("resources", name));
                    r.name = name.to_string();
                    let _ = rk;
                    m.resources.insert(name.to_string(), r);
                }
            }
            "services" => {
                for (name, _, sv) in named(dec, v, "services", "service") {
                    let mut s = service(dec, sv, &join("services", name));
                    s.name = name.to_string();
                    m.services.insert(name.to_string(), s);
                }
            }
            "timers" => {
                for (name, _, tv) in named(dec, v, "timers", "timer") {
                    let mut t = timer(dec, tv, &join("timers", name));
                    t.name = name.to_string();
                    m.timers.insert(name.to_string(), t);
                }
            }
            "balancers" => {
                for (name, _, bv) in named(dec, v, "balancers", "balancer") {
                    let mut b = balancer(dec, bv, &join("balancers", name));
                    b.name = name.to_string();
                    m.balancers.insert(name.to_string(), b);
                }
            }
            "configs" => m.configs = configs(dec, v, "configs"),
            "appSettings" => m.app_settings = Some(app_settings(dec, v, "appSettings")),
            "budget" => m.budget = Some(budget(dec, v, "budget")),
            "version" => {
                dec.d.warn(
                    k.pos,
                    "`version` is a docker-compose key; convox.yml has no version, so it is ignored",
                    Some("remove the `version:` line (a Gen1 docker-compose.yml is not a convox.yml)".into()),
                );
                m.extra.insert(key.to_string(), dec.raw(v));
            }
            _ => {
                dec.unknown(k, key, "", TOP_KEYS);
                m.extra.insert(key.to_string(), dec.raw(v));
            }
        }
    }
    // Combined env and labels are computed in `defaults::manifest`.
    defaults::manifest(&mut m, &top_env_pos, dec);
    m
}

/// The entries of a named section (`services:`, …): a map whose duplicate keys are errors.
fn named<'n>(dec: &mut Dec, n: &'n Node, path: &str, what: &str) -> Entries<'n> {
    let hint = Some(format!(
        "write `{path}:` then one `<{what} name>:` per {what}, indented below it"
    ));
    dec.entries(n, path, &format!("a map of {what} names"), hint, true)
}

/// `environment`: a list of `KEY` / `KEY=default`; nested lists are flattened; non-strings dropped.
fn env_list(dec: &mut Dec, n: &Node, path: &str) -> (Vec<String>, Vec<Pos>) {
    let mut env = Vec::new();
    let mut pos = Vec::new();
    let Some(items) = n.as_seq() else {
        if !n.is_null() {
            let hint = match n.as_map().and_then(|m| m.first()) {
                Some((k, v)) => format!(
                    "write a list of KEY=default: `- {}={}` (or `- {}` to require it)",
                    k.text().unwrap_or("KEY"),
                    v.text().unwrap_or(""),
                    k.text().unwrap_or("KEY")
                ),
                None => "write a list: `- KEY` (required) or `- KEY=default`".into(),
            };
            dec.type_err(n, path, "a list of KEY or KEY=default", Some(hint));
        }
        return (env, pos);
    };
    let mut push = |dec: &mut Dec, item: &Node, p: &str| match item.value() {
        Some(Value::Str(s)) => {
            dec.positions.insert(p.to_string(), item.pos);
            env.push(s.to_string());
            pos.push(item.pos);
        }
        _ => {
            let hint = match &item.kind {
                Kind::Map(m) if m.len() == 1 => Some(format!(
                    "write `- {}={}`",
                    m[0].0.text().unwrap_or("KEY"),
                    m[0].1.text().unwrap_or("")
                )),
                Kind::Scalar(_) => Some(format!("quote it: `- \"{}\"`", item.text().unwrap_or(""))),
                _ => None,
            };
            dec.d.warn(
                item.pos,
                format!(
                    "{p}: {} is not a KEY or KEY=default declaration, ignored",
                    item.describe()
                ),
                hint,
            );
        }
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        if let Some(inner) = item.as_seq() {
            for (j, it) in inner.iter().enumerate() {
                push(dec, it, &idx(&p, j));
            }
        } else {
            push(dec, item, &p);
        }
    }
    (env, pos)
}

fn labels(dec: &mut Dec, n: &Node, path: &str) -> IndexMap<String, String> {
    if n.as_seq().is_some() {
        dec.type_err(
            n,
            path,
            "a map of `key: value`",
            Some("Gen1 docker-compose labels (`- convox.port.443.protocol=https`) are not used by convox.yml: set `port: https:<port>`, `health:` and friends on the service, and write labels as a map (`team: web`)".into()),
        );
        return IndexMap::new();
    }
    dec.string_map(n, path)
}

fn resource(dec: &mut Dec, n: &Node, path: &str) -> Resource {
    let mut r = Resource::default();
    for (key, k, v) in dec.fields(n, path, "a map with `type:` and `options:`") {
        let p = join(path, key);
        match key {
            "type" => r.kind = dec.string(v, &p).unwrap_or_default(),
            "image" => r.image = dec.string(v, &p),
            "options" => r.options = dec.string_map(v, &p),
            _ => {
                dec.unknown(k, key, path, RESOURCE_FIELDS);
                r.extra.insert(key.to_string(), dec.raw(v));
            }
        }
    }
    r
}

fn port_str(dec: &mut Dec, n: &Node, path: &str, s: &str) -> Option<Port> {
    let (scheme, num) = match s.split_once(':') {
        Some((sch, num)) => (sch.to_string(), num),
        None => (String::new(), s),
    };
    match num.trim().parse::<i64>() {
        Ok(p) => port_num(dec, n, path, p, scheme),
        Err(_) => {
            dec.d.error(
                n.pos,
                format!("{path}: {s:?} is not a port"),
                Some("write `3000`, `https:3000` or `{port: 3000, scheme: https}`".into()),
            );
            None
        }
    }
}

fn port_num(dec: &mut Dec, n: &Node, path: &str, p: i64, scheme: String) -> Option<Port> {
    if p == 0 {
        dec.d.warn(
            n.pos,
            format!("{path}: port 0 means no port"),
            Some("remove the key, or give the port the process listens on".into()),
        );
        return None;
    }
    match u16::try_from(p) {
        Ok(port) => Some(Port {
            port,
            scheme: if scheme == "grpc" {
                "GRPC".into()
            } else {
                scheme
            },
        }),
        Err(_) => {
            dec.d.error(
                n.pos,
                format!("{path}: port {p} is out of range"),
                Some("use a port between 1 and 65535".into()),
            );
            None
        }
    }
}

/// `port`: `3000`, `"https:3000"`, or `{port, scheme}`.
fn port(dec: &mut Dec, n: &Node, path: &str) -> Option<Port> {
    let hint = || Some("write `3000`, `https:3000` or `{port: 3000, scheme: https}`".to_string());
    match n.value() {
        Some(Value::Null) => None,
        Some(Value::Int(p)) => port_num(dec, n, path, p, String::new()),
        Some(Value::Str(s)) => port_str(dec, n, path, s),
        Some(_) => {
            dec.type_err(n, path, "an integer or \"scheme:port\"", hint());
            None
        }
        None if n.as_map().is_some() => {
            let mut port: Option<Port> = None;
            let mut scheme = None;
            let mut seen_port = false;
            for (key, k, v) in dec.fields(n, path, "a map") {
                let p = join(path, key);
                match key {
                    "port" => {
                        seen_port = true;
                        port = match v.value() {
                            Some(Value::Int(i)) => port_num(dec, v, &p, i, String::new()),
                            Some(Value::Str(s)) => port_str(dec, v, &p, s),
                            Some(Value::Null) => None,
                            _ => {
                                dec.type_err(v, &p, "an integer", None);
                                None
                            }
                        }
                    }
                    "scheme" => scheme = dec.string(v, &p),
                    _ => dec.unknown(k, key, path, PORT_KEYS),
                }
            }
            if !seen_port {
                dec.d.error(
                    n.pos,
                    format!("{path}: could not parse port: no `port:` in the map"),
                    Some("write `{port: 3000, scheme: https}`".into()),
                );
            }
            let mut port = port?;
            if let Some(s) = scheme {
                port.scheme = if s == "grpc" { "GRPC".into() } else { s };
            }
            Some(port)
        }
        None => {
            dec.type_err(n, path, "an integer or \"scheme:port\"", hint());
            None
        }
    }
}

fn ports(dec: &mut Dec, n: &Node, path: &str) -> Vec<PortProtocol> {
    let mut out = Vec::new();
    let Some(items) = n.as_seq() else {
        if !n.is_null() {
            dec.type_err(
                n,
                path,
                "a list of ports",
                Some("write `- 5000` or `- 5001/udp` entries".into()),
            );
        }
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        dec.positions.insert(p.clone(), item.pos);
        let hint = || Some("write `5000` or `\"5001/udp\"`".to_string());
        let (num, proto) = match item.value() {
            Some(Value::Int(v)) => (v, "tcp".to_string()),
            Some(Value::Str(s)) => {
                let (a, b) = s.split_once('/').unwrap_or((s, ""));
                match a.trim().parse::<i64>() {
                    Ok(v) => (v, b.trim().to_lowercase()),
                    Err(_) => {
                        dec.d.error(item.pos, format!("invalid port: {s}"), hint());
                        continue;
                    }
                }
            }
            _ => {
                dec.type_err(item, &p, "a port like 5000 or \"5001/udp\"", hint());
                continue;
            }
        };
        let proto = if proto.is_empty() {
            "tcp".to_string()
        } else {
            proto
        };
        if proto != "tcp" && proto != "udp" {
            dec.d.error(
                item.pos,
                format!("{p}: protocol `{proto}` must be tcp or udp"),
                Some(format!("write `{num}/tcp` or `{num}/udp`")),
            );
            continue;
        }
        match u16::try_from(num) {
            Ok(port) if port > 0 => out.push(PortProtocol {
                port,
                protocol: proto,
            }),
            _ => dec.d.error(
                item.pos,
                format!("{p}: port {num} is out of range"),
                Some("use a port between 1 and 65535".into()),
            ),
        }
    }
    out
}

fn domains(dec: &mut Dec, n: &Node, path: &str) -> Vec<String> {
    let raw: Vec<String> = match n.value() {
        Some(Value::Null) => Vec::new(),
        Some(_) => n
            .text()
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect(),
        None if n.as_seq().is_some() => dec.strings(n, path),
        None => {
            dec.type_err(
                n,
                path,
                "a domain, a comma-separated string or a list",
                Some("write `domain: example.org` or a list of `- example.org` entries".into()),
            );
            Vec::new()
        }
    };
    raw.iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

fn int_field(dec: &mut Dec, v: &Node, p: &str) -> Option<i64> {
    dec.int(v, p)
}

fn health(dec: &mut Dec, n: &Node, path: &str) -> Health {
    let mut h = Health {
        path: String::new(),
        grace: 0,
        interval: 0,
        timeout: 0,
        disable: false,
        port: None,
    };
    match &n.kind {
        Kind::Map(_) => {
            for (key, k, v) in dec.fields(n, path, "a map") {
                let p = join(path, key);
                match key {
                    "path" => h.path = dec.string(v, &p).unwrap_or_default(),
                    "grace" => h.grace = int_field(dec, v, &p).unwrap_or(0),
                    "interval" => h.interval = int_field(dec, v, &p).unwrap_or(0),
                    "timeout" => h.timeout = int_field(dec, v, &p).unwrap_or(0),
                    "disable" => h.disable = dec.boolean(v, &p).unwrap_or(false),
                    "port" => h.port = port(dec, v, &p),
                    _ => dec.unknown(k, key, path, HEALTH_KEYS),
                }
            }
        }
        _ => match n.value() {
            Some(Value::Null) => {}
            Some(Value::Str(s)) => h.path = s.to_string(),
            _ => dec.type_err(
                n,
                path,
                "a path or a map",
                Some("write `health: /health` or `health: {path: /health, interval: 10}`".into()),
            ),
        },
    }
    h
}

fn liveness(dec: &mut Dec, n: &Node, path: &str) -> Option<Liveness> {
    let mut l = Liveness {
        path: String::new(),
        grace: 0,
        interval: 0,
        timeout: 0,
        success_threshold: 0,
        failure_threshold: 0,
        port: None,
    };
    for (key, k, v) in dec.fields(n, path, "a map with `path:`") {
        let p = join(path, key);
        match key {
            "path" => l.path = dec.string(v, &p).unwrap_or_default().trim().to_string(),
            "grace" => l.grace = int_field(dec, v, &p).unwrap_or(0),
            "interval" => l.interval = int_field(dec, v, &p).unwrap_or(0),
            "timeout" => l.timeout = int_field(dec, v, &p).unwrap_or(0),
            "successThreshold" => l.success_threshold = int_field(dec, v, &p).unwrap_or(0),
            "failureThreshold" => l.failure_threshold = int_field(dec, v, &p).unwrap_or(0),
            "port" => l.port = port(dec, v, &p),
            _ => dec.unknown(k, key, path, LIVENESS_KEYS),
        }
    }
    if l.path.is_empty() {
        if !n.is_null() {
            dec.d.warn(
                n.pos,
                format!("{path}: no `path`, so the liveness check is off"),
                Some("add `path: /health`".into()),
            );
        }
        return None;
    }
    Some(l)
}

fn startup_probe(dec: &mut Dec, n: &Node, path: &str) -> Option<StartupProbe> {
    if n.is_null() {
        return None;
    }
    let mut s = StartupProbe::default();
    for (key, k, v) in dec.fields(n, path, "a map") {
        let p = join(path, key);
        match key {
            "path" => s.path = dec.string(v, &p),
            "tcpSocketPort" => s.tcp_socket_port = dec.string(v, &p),
            "grace" => s.grace = dec.int(v, &p),
            "interval" => s.interval = dec.int(v, &p),
            "timeout" => s.timeout = dec.int(v, &p),
            "successThreshold" => s.success_threshold = dec.int(v, &p),
            "failureThreshold" => s.failure_threshold = dec.int(v, &p),
            _ => dec.unknown(k, key, path, STARTUP_KEYS),
        }
    }
    Some(s)
}

/// `scale.count`: `2`, `"1-3"`, or `{min, max}`.
fn scale_count(dec: &mut Dec, n: &Node, path: &str) -> Option<ScaleCount> {
    let hint =
        || Some("write a number like `2`, a range like `1-3`, or `{min: 1, max: 3}`".to_string());
    match n.value() {
        Some(Value::Null) => None,
        Some(Value::Int(i)) => Some(ScaleCount { min: i, max: i }),
        Some(Value::Str(s)) => {
            let parts: Vec<&str> = s.split('-').collect();
            let nums: Option<Vec<i64>> = parts.iter().map(|p| p.parse::<i64>().ok()).collect();
            match (parts.len(), nums) {
                (1, Some(v)) => Some(ScaleCount {
                    min: v[0],
                    max: v[0],
                }),
                (2, Some(v)) => Some(ScaleCount {
                    min: v[0],
                    max: v[1],
                }),
                _ => {
                    dec.d
                        .error(n.pos, format!("{path}: invalid scale: {s}"), hint());
                    None
                }
            }
        }
        Some(_) => {
            dec.type_err(n, path, "a count", hint());
            None
        }
        None if n.as_map().is_some() => {
            let mut c = ScaleCount::default();
            for (key, k, v) in dec.fields(n, path, "a map") {
                let p = join(path, key);
                let val = match v.value() {
                    Some(Value::Int(i)) => Some(i),
                    Some(Value::Str(s)) => match s.parse::<i64>() {
                        Ok(i) => Some(i),
                        Err(_) => {
                            dec.d
                                .error(v.pos, format!("{p}: invalid scale: {s}"), hint());
                            None
                        }
                    },
                    Some(Value::Null) => None,
                    _ => {
                        dec.type_err(v, &p, "an integer", None);
                        None
                    }
                };
                match key {
                    "min" => c.min = val.unwrap_or(0),
                    "max" => c.max = val.unwrap_or(0),
                    _ => dec.unknown(k, key, path, COUNT_KEYS),
                }
            }
            Some(c)
        }
        None => {
            dec.type_err(n, path, "a count", hint());
            None
        }
    }
}

fn trigger(dec: &mut Dec, n: &Node, path: &str) -> Option<AutoscaleTrigger> {
    let mut t = AutoscaleTrigger::default();
    if n.is_null() {
        return None;
    }
    for (key, _, v) in dec.fields(n, path, "a map with `threshold:`") {
        match key {
            "threshold" => t.threshold = dec.float(v, &join(path, key)).unwrap_or(0.0),
            _ => {
                let r = dec.raw(v);
                t.extra.insert(key.to_string(), r);
            }
        }
    }
    Some(t)
}

fn autoscale(dec: &mut Dec, n: &Node, path: &str) -> Autoscale {
    let mut a = Autoscale::default();
    for (key, _, v) in dec.fields(n, path, "a map") {
        let p = join(path, key);
        match key {
            "cpu" => a.cpu = trigger(dec, v, &p),
            "memory" => a.memory = trigger(dec, v, &p),
            "gpuUtilization" => a.gpu_utilization = trigger(dec, v, &p),
            "queueDepth" => a.queue_depth = trigger(dec, v, &p),
            "custom" => match v.as_seq() {
                Some(items) => a.custom = items.iter().map(Node::to_json).collect(),
                None if v.is_null() => {}
                None => dec.type_err(v, &p, "a list of triggers", None),
            },
            _ => {
                let r = dec.raw(v);
                a.extra.insert(key.to_string(), r);
            }
        }
    }
    a
}

fn targets(dec: &mut Dec, n: &Node, path: &str) -> Targets {
    let mut t = Targets::default();
    for (key, k, v) in dec.fields(n, path, "a map") {
        let p = join(path, key);
        match key {
            "cpu" => t.cpu = dec.int(v, &p),
            "memory" => t.memory = dec.int(v, &p),
            "requests" => t.requests = dec.int(v, &p),
            "custom" => {
                for (name, mk, mv) in dec.fields(v, &p, "a map of `Namespace/Metric:` entries") {
                    let mp = join(&p, name);
                    let mut metric = CustomMetric::default();
                    for (f, fk, fv) in dec.fields(mv, &mp, "a map") {
                        let fp = join(&mp, f);
                        match f {
                            "aggregate" => {
                                metric.aggregate = dec.string(fv, &fp).unwrap_or_default()
                            }
                            "value" => metric.value = dec.float(fv, &fp).unwrap_or(0.0),
                            "dimensions" => metric.dimensions = dec.string_map(fv, &fp),
                            _ => dec.unknown(fk, f, &mp, METRIC_KEYS),
                        }
                    }
                    let _ = mk;
                    t.custom.insert(name.to_string(), metric);
                }
            }
            "external" => match v.as_seq() {
                Some(items) => t.external = items.iter().map(Node::to_json).collect(),
                None if v.is_null() => {}
                None => dec.type_err(v, &p, "a list", None),
            },
            _ => dec.unknown(k, key, path, TARGET_KEYS),
        }
    }
    t
}

/// `scale`: `2`, `"1-3"`, or a map. Records what was written for the presence-dependent defaults.
fn scale(dec: &mut Dec, n: &Node, path: &str, w: &mut Written) -> Scale {
    let mut s = Scale {
        count: ScaleCount::default(),
        cpu: 0,
        memory: 0,
        ..Scale::default()
    };
    w.scale = true;
    match &n.kind {
        Kind::Map(entries) => {
            w.scale_subkeys = !entries.is_empty();
            w.scale_empty = entries.is_empty();
            for (key, k, v) in dec.fields(n, path, "a map") {
                let p = join(path, key);
                match key {
                    "count" => {
                        w.scale_count = true;
                        if let Some(c) = scale_count(dec, v, &p) {
                            s.count = c;
                        }
                    }
                    "cpu" => s.cpu = dec.int(v, &p).unwrap_or(0),
                    "memory" => s.memory = dec.int(v, &p).unwrap_or(0),
                    "min" => {
                        w.scale_min = true;
                        w.min = dec.int(v, &p);
                    }
                    "max" => {
                        w.scale_max = true;
                        w.max = dec.int(v, &p);
                    }
                    "gpu" => {
                        s.gpu = match v.value() {
                            Some(Value::Int(c)) => Some(Gpu {
                                count: c,
                                vendor: String::new(),
                            }),
                            Some(Value::Null) => None,
                            None if v.as_map().is_some() => {
                                let mut g = Gpu {
                                    count: 0,
                                    vendor: String::new(),
                                };
                                for (gk, gkn, gv) in dec.fields(v, &p, "a map") {
                                    let gp = join(&p, gk);
                                    match gk {
                                        "count" => g.count = dec.int(gv, &gp).unwrap_or(0),
                                        "vendor" => {
                                            g.vendor = dec.string(gv, &gp).unwrap_or_default()
                                        }
                                        _ => dec.unknown(gkn, gk, &p, GPU_KEYS),
                                    }
                                }
                                Some(g)
                            }
                            _ => {
                                dec.type_err(v, &p, "a GPU count or {count, vendor}", None);
                                None
                            }
                        }
                    }
                    "limit" => {
                        let mut l = Limit::default();
                        for (lk, lkn, lv) in dec.fields(v, &p, "a map with `cpu:` and `memory:`") {
                            let lp = join(&p, lk);
                            match lk {
                                "cpu" => l.cpu = dec.int(lv, &lp).unwrap_or(0),
                                "memory" => l.memory = dec.int(lv, &lp).unwrap_or(0),
                                _ => dec.unknown(lkn, lk, &p, LIMIT_KEYS),
                            }
                        }
                        s.limit = Some(l);
                    }
                    "targets" => s.targets = Some(targets(dec, v, &p)),
                    "autoscale" => {
                        w.autoscale_written = true;
                        s.autoscale = Some(autoscale(dec, v, &p));
                    }
                    "keda" => s.keda = Some(dec.raw(v)),
                    "vpa" => s.vpa = Some(dec.raw(v)),
                    "cooldown" => {
                        dec.d.warn(
                            k.pos,
                            format!("{p}: `cooldown` is a Convox v2 key, ignored"),
                            Some("remove it".into()),
                        );
                        s.cooldown = Some(dec.raw(v));
                    }
                    _ => dec.unknown(k, key, path, SCALE_KEYS),
                }
            }
        }
        _ => match n.value() {
            Some(Value::Null) => w.scale_empty = true,
            Some(Value::Int(_)) | Some(Value::Str(_)) => {
                if let Some(c) = scale_count(dec, n, path) {
                    s.count = c;
                }
            }
            _ => dec.type_err(
                n,
                path,
                "a count, a range like \"1-3\", or a map",
                Some("write `scale: 2` or `scale: {count: 2, cpu: 256, memory: 512}`".into()),
            ),
        },
    }
    s
}

fn volume_options(dec: &mut Dec, n: &Node, path: &str) -> Vec<VolumeOption> {
    let mut out = Vec::new();
    let Some(items) = n.as_seq() else {
        if !n.is_null() {
            dec.type_err(
                n,
                path,
                "a list",
                Some("write `- emptyDir: {id: cache, mountPath: /cache}`".into()),
            );
        }
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        dec.positions.insert(p.clone(), item.pos);
        for (kind, k, v) in dec.fields(item, &p, "a map like `emptyDir: {id, mountPath}`") {
            let kp = join(&p, kind);
            match kind {
                "emptyDir" => {
                    let mut e = EmptyDir::default();
                    for (f, fk, fv) in dec.fields(v, &kp, "a map") {
                        let fp = join(&kp, f);
                        match f {
                            "id" => e.id = dec.string(fv, &fp).unwrap_or_default(),
                            "mountPath" => e.mount_path = dec.string(fv, &fp).unwrap_or_default(),
                            "medium" => e.medium = dec.string(fv, &fp),
                            "sizeLimit" => e.size_limit = dec.string(fv, &fp),
                            _ => dec.unknown(fk, f, &kp, EMPTY_DIR_KEYS),
                        }
                    }
                    out.push(VolumeOption::EmptyDir(e));
                }
                "awsEfs" | "azureFiles" => {
                    let mut sv = SharedVolume::default();
                    for (f, _, fv) in dec.fields(v, &kp, "a map") {
                        let fp = join(&kp, f);
                        match f {
                            "id" => sv.id = dec.string(fv, &fp).unwrap_or_default(),
                            "mountPath" => sv.mount_path = dec.string(fv, &fp).unwrap_or_default(),
                            "accessMode" => sv.access_mode = dec.string(fv, &fp),
                            _ => {
                                let r = dec.raw(fv);
                                sv.extra.insert(f.to_string(), r);
                            }
                        }
                    }
                    dec.d.warn(
                        k.pos,
                        format!("{kp}: `{kind}` volumes are cloud-only; Dray does not mount them"),
                        Some("use `volumes:` or an `emptyDir` volume".into()),
                    );
                    out.push(if kind == "awsEfs" {
                        VolumeOption::AwsEfs(sv)
                    } else {
                        VolumeOption::AzureFiles(sv)
                    });
                }
                _ => dec.unknown(k, kind, &p, VOLUME_KINDS),
            }
        }
    }
    out
}

fn config_mounts(dec: &mut Dec, n: &Node, path: &str) -> Vec<ConfigMount> {
    let mut out = Vec::new();
    let Some(items) = n.as_seq() else {
        if !n.is_null() {
            dec.type_err(
                n,
                path,
                "a list",
                Some("write `- {id: app-config, dir: /etc/app, filename: config.json}`".into()),
            );
        }
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        dec.positions.insert(p.clone(), item.pos);
        let mut c = ConfigMount::default();
        for (key, k, v) in dec.fields(item, &p, "a map with `id`, `dir` and `filename`") {
            let fp = join(&p, key);
            match key {
                "id" => c.id = dec.string(v, &fp).unwrap_or_default(),
                "dir" => c.dir = dec.string(v, &fp).unwrap_or_default(),
                "filename" => c.filename = dec.string(v, &fp).unwrap_or_default(),
                _ => dec.unknown(k, key, &p, CONFIG_MOUNT_KEYS),
            }
        }
        out.push(c);
    }
    out
}

fn security_context(dec: &mut Dec, n: &Node, path: &str) -> SecurityContext {
    let mut sc = SecurityContext::default();
    for (key, k, v) in dec.fields(n, path, "a map") {
        let p = join(path, key);
        match key {
            "runAsNonRoot" => sc.run_as_non_root = dec.boolean(v, &p),
            "runAsUser" => sc.run_as_user = dec.int(v, &p),
            "runAsGroup" => sc.run_as_group = dec.int(v, &p),
            "readOnlyRootFilesystem" => sc.read_only_root_filesystem = dec.boolean(v, &p),
            "allowPrivilegeEscalation" => sc.allow_privilege_escalation = dec.boolean(v, &p),
            "capabilities" => {
                let mut c = Capabilities::default();
                for (ck, ckn, cv) in dec.fields(v, &p, "a map with `add:` and `drop:`") {
                    let cp = join(&p, ck);
                    match ck {
                        "add" => c.add = dec.strings(cv, &cp),
                        "drop" => c.drop = dec.strings(cv, &cp),
                        _ => dec.unknown(ckn, ck, &p, CAPABILITY_KEYS),
                    }
                }
                sc.capabilities = Some(c);
            }
            "seccompProfile" => {
                sc.seccomp_profile = if v.as_map().is_some() {
                    let mut t = None;
                    for (sk, _, sv) in dec.fields(v, &p, "a map") {
                        if sk == "type" {
                            t = dec.string(sv, &join(&p, sk));
                        }
                    }
                    t
                } else {
                    dec.string(v, &p)
                }
            }
            _ => dec.unknown(k, key, path, SECURITY_KEYS),
        }
    }
    sc
}

fn image_pull_secrets(dec: &mut Dec, n: &Node, path: &str) -> Vec<ImagePullSecret> {
    let mut out = Vec::new();
    let Some(items) = n.as_seq() else {
        if !n.is_null() {
            dec.type_err(
                n,
                path,
                "a list",
                Some("write `- {registry: ghcr.io, username: me, passwordEnv: GHCR_TOKEN}`".into()),
            );
        }
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        dec.positions.insert(p.clone(), item.pos);
        let mut s = ImagePullSecret::default();
        for (key, k, v) in dec.fields(item, &p, "a map") {
            let fp = join(&p, key);
            match key {
                "registry" => s.registry = dec.string(v, &fp).unwrap_or_default(),
                "username" => s.username = dec.string(v, &fp).unwrap_or_default(),
                "password" => s.password = dec.string(v, &fp),
                "passwordEnv" => s.password_env = dec.string(v, &fp),
                _ => dec.unknown(k, key, &p, PULL_SECRET_KEYS),
            }
        }
        out.push(s);
    }
    out
}

fn service(dec: &mut Dec, n: &Node, path: &str) -> Service {
    let mut s = Service::default();
    let mut w = Written::default();
    if n.as_map().is_none() && !n.is_null() {
        dec.type_err(
            n,
            path,
            "a map of service settings",
            Some(
                "write the settings indented below the service name, for example `build: .`".into(),
            ),
        );
    }
    for (key, k, v) in dec.fields(n, path, "a map") {
        let p = join(path, key);
        match key {
            "build" => {
                s.build = match &v.kind {
                    Kind::Map(_) => {
                        let mut b = Build::default();
                        for (bk, bkn, bv) in dec.fields(v, &p, "a map") {
                            let bp = join(&p, bk);
                            match bk {
                                "path" => b.path = dec.string(bv, &bp).unwrap_or_default(),
                                "manifest" => b.manifest = dec.string(bv, &bp).unwrap_or_default(),
                                "args" => b.args = dec.strings(bv, &bp),
                                "dockerfile" => dec.d.warn(
                                    bkn.pos,
                                    format!("{p}: unknown key `dockerfile`, ignored"),
                                    Some("the Dockerfile name goes in `manifest:`".into()),
                                ),
                                "context" => dec.d.warn(
                                    bkn.pos,
                                    format!("{p}: unknown key `context`, ignored"),
                                    Some("the build directory goes in `path:`".into()),
                                ),
                                _ => dec.unknown(bkn, bk, &p, BUILD_KEYS),
                            }
                        }
                        Some(b)
                    }
                    _ => match v.value() {
                        Some(Value::Null) => None,
                        Some(_) => Some(Build {
                            path: v.text().unwrap_or_default().to_string(),
                            ..Build::default()
                        }),
                        None => {
                            dec.type_err(v, &p, "a path or {path, manifest, args}", Some("write `build: .` or `build: {path: ., manifest: Dockerfile.prod}`".into()));
                            None
                        }
                    },
                }
            }
            "image" => s.image = dec.string(v, &p),
            "command" => {
                if let Some(items) = v.as_seq() {
                    let words: Vec<String> = items
                        .iter()
                        .map(|i| i.text().unwrap_or_default().to_string())
                        .collect();
                    dec.type_err(
                        v,
                        &p,
                        "a string (a list is a v2 form that v3 rejects)",
                        Some(format!("write `command: {}`", shell_words::join(&words))),
                    );
                } else if let Some(c) = dec.string(v, &p) {
                    if let Err(e) = shell_words::split(&c) {
                        dec.d.error(
                            v.pos,
                            format!("{p}: cannot split the command into arguments: {e}"),
                            Some("close the quote, or escape it with a backslash".into()),
                        );
                    }
                    s.command = Some(c);
                }
            }
            "environment" => {
                let (env, pos) = env_list(dec, v, &p);
                s.environment = env;
                s.env_pos = pos;
            }
            "port" => s.port = port(dec, v, &p),
            "ports" => s.ports = ports(dec, v, &p),
            "domain" => s.domains = domains(dec, v, &p),
            "health" => s.health = health(dec, v, &p),
            "liveness" => s.liveness = liveness(dec, v, &p),
            "startupProbe" => s.startup_probe = startup_probe(dec, v, &p),
            "grpcHealthEnabled" => s.grpc_health_enabled = dec.boolean(v, &p).unwrap_or(false),
            "scale" => s.scale = scale(dec, v, &p, &mut w),
            "deployment" => {
                for (dk, dkn, dv) in dec.fields(v, &p, "a map with `minimum:` and `maximum:`") {
                    let dp = join(&p, dk);
                    match dk {
                        "minimum" => {
                            w.deployment_minimum = true;
                            s.deployment.minimum = dec.int(dv, &dp).unwrap_or(0);
                        }
                        "maximum" => {
                            w.deployment_maximum = true;
                            s.deployment.maximum = dec.int(dv, &dp).unwrap_or(0);
                        }
                        _ => dec.unknown(dkn, dk, &p, DEPLOYMENT_KEYS),
                    }
                }
            }
            "termination" => {
                for (tk, tkn, tv) in dec.fields(v, &p, "a map with `grace:`") {
                    match tk {
                        "grace" => {
                            w.termination_grace = true;
                            s.termination.grace = dec.int(tv, &join(&p, tk)).unwrap_or(0);
                        }
                        _ => dec.unknown(tkn, tk, &p, TERMINATION_KEYS),
                    }
                }
            }
            "drain" => {
                s.drain = dec.int(v, &p);
                dec.d.warn(
                    k.pos,
                    format!("{p}: `drain` is deprecated and ignored"),
                    Some("use `termination: {grace: N}` for the stop grace period".into()),
                );
            }
            "internal" => s.internal = dec.boolean(v, &p).unwrap_or(false),
            "internalRouter" => s.internal_router = dec.boolean(v, &p).unwrap_or(false),
            "agent" => match v.value() {
                Some(Value::Bool(b)) => s.agent = b,
                Some(Value::Null) => {}
                None if v.as_map().is_some() => dec.d.error(
                    v.pos,
                    "agent ports are now specified at the service level",
                    Some(
                        "write `agent: true` and list the ports under the service's `ports:`"
                            .into(),
                    ),
                ),
                _ => dec.d.error(
                    v.pos,
                    format!("could not parse agent: {}", v.text().unwrap_or("")),
                    Some("write `agent: true`".into()),
                ),
            },
            "singleton" => s.singleton = dec.boolean(v, &p).unwrap_or(false),
            "sticky" => s.sticky = dec.boolean(v, &p).unwrap_or(false),
            "timeout" => s.timeout = dec.int(v, &p).unwrap_or(0),
            "tls" => {
                for (tk, tkn, tv) in dec.fields(v, &p, "a map with `redirect:`") {
                    match tk {
                        "redirect" => {
                            w.tls_redirect = true;
                            s.tls.redirect = dec.boolean(tv, &join(&p, tk)).unwrap_or(false);
                        }
                        _ => dec.unknown(tkn, tk, &p, TLS_KEYS),
                    }
                }
            }
            "whitelist" => {
                if v.as_seq().is_some() {
                    let items = dec.strings(v, &p);
                    dec.type_err(
                        v,
                        &p,
                        "a comma-separated string",
                        Some(format!("write `whitelist: {}`", items.join(","))),
                    );
                } else {
                    s.whitelist = dec.string(v, &p);
                }
            }
            "init" => {
                w.init = true;
                s.init = dec.boolean(v, &p).unwrap_or(false);
            }
            "privileged" => s.privileged = dec.boolean(v, &p).unwrap_or(false),
            "resources" => s.resources = dec.strings(v, &p),
            "volumes" => s.volumes = dec.strings(v, &p),
            "volumeOptions" => s.volume_options = volume_options(dec, v, &p),
            "annotations" => s.annotations = dec.kv_list(v, &p),
            "ingressAnnotations" => s.ingress_annotations = dec.kv_list(v, &p),
            "labels" => s.labels = labels(dec, v, &p),
            "lifecycle" => {
                let mut l = Lifecycle::default();
                for (lk, lkn, lv) in dec.fields(v, &p, "a map with `preStop:` and `postStart:`") {
                    let lp = join(&p, lk);
                    match lk {
                        "preStop" => l.pre_stop = dec.string(lv, &lp),
                        "postStart" => l.post_start = dec.string(lv, &lp),
                        _ => dec.unknown(lkn, lk, &p, LIFECYCLE_KEYS),
                    }
                }
                s.lifecycle = Some(l);
            }
            "initContainer" => {
                let mut ic = InitContainer::default();
                for (ik, ikn, iv) in dec.fields(v, &p, "a map") {
                    let ip = join(&p, ik);
                    match ik {
                        "image" => ic.image = dec.string(iv, &ip),
                        "command" => ic.command = dec.string(iv, &ip),
                        "volumeOptions" => ic.volume_options = volume_options(dec, iv, &ip),
                        "configMounts" => ic.config_mounts = config_mounts(dec, iv, &ip),
                        _ => dec.unknown(ikn, ik, &p, INIT_CONTAINER_KEYS),
                    }
                }
                s.init_container = Some(ic);
            }
            "configMounts" => s.config_mounts = config_mounts(dec, v, &p),
            "securityContext" => s.security_context = Some(security_context(dec, v, &p)),
            "imagePullSecrets" => s.image_pull_secrets = image_pull_secrets(dec, v, &p),
            "nodeSelectorLabels" => s.node_selector_labels = dec.string_map(v, &p),
            "nodeAffinityLabels" => {
                let Some(items) = v.as_seq() else {
                    if !v.is_null() {
                        dec.type_err(v, &p, "a list of {label, value, weight}", None);
                    }
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = idx(&p, i);
                    let mut a = Affinity::default();
                    for (ak, akn, av) in dec.fields(item, &ip, "a map") {
                        let ap = join(&ip, ak);
                        match ak {
                            "label" => a.label = dec.string(av, &ap).unwrap_or_default(),
                            "value" => a.value = dec.string(av, &ap).unwrap_or_default(),
                            "weight" => a.weight = dec.int(av, &ap).unwrap_or(0),
                            _ => dec.unknown(akn, ak, &ip, AFFINITY_KEYS),
                        }
                    }
                    s.node_affinity_labels.push(a);
                }
            }
            "dnsConfig" => {
                let mut dc = DnsConfig::default();
                for (dk, dkn, dv) in dec.fields(v, &p, "a map with `ndots:`") {
                    match dk {
                        "ndots" => dc.ndots = dec.int(dv, &join(&p, dk)).unwrap_or(0),
                        _ => dec.unknown(dkn, dk, &p, DNS_KEYS),
                    }
                }
                s.dns_config = Some(dc);
            }
            "disableHostUsers" => s.disable_host_users = dec.boolean(v, &p).unwrap_or(false),
            "accessControl" => s.access_control = Some(dec.raw(v)),
            "certificate" => {
                let mut c = Certificate::default();
                for (ck, ckn, cv) in dec.fields(v, &p, "a map with `id:`") {
                    let cp = join(&p, ck);
                    match ck {
                        "id" => c.id = dec.string(cv, &cp).unwrap_or_default(),
                        "duration" => c.duration = dec.string(cv, &cp).unwrap_or_default(),
                        _ => dec.unknown(ckn, ck, &p, CERTIFICATE_KEYS),
                    }
                }
                s.certificate = Some(c);
            }
            "test" => s.test = dec.string(v, &p),
            _ => {
                if let Some((_, instead)) = SERVICE_V2_KEYS.iter().find(|(name, _)| *name == key) {
                    dec.d.warn(
                        k.pos,
                        format!("{p}: `{key}` is a Convox v2 (rack) key; Dray ignores it"),
                        Some(instead.to_string()),
                    );
                } else if let Some((_, meant)) = SERVICE_ALIASES.iter().find(|(a, _)| *a == key) {
                    dec.d.warn(
                        k.pos,
                        format!("{path}: unknown key `{key}`, ignored"),
                        Some(format!("did you mean `{meant}`?")),
                    );
                } else {
                    dec.unknown(k, key, path, SERVICE_KEYS);
                }
                s.extra.insert(key.to_string(), dec.raw(v));
            }
        }
    }
    defaults::service(&mut s, &w, path, dec);
    s
}

fn timer(dec: &mut Dec, n: &Node, path: &str) -> Timer {
    let mut t = Timer::default();
    for (key, k, v) in dec.fields(n, path, "a map with `schedule`, `command` and `service`") {
        let p = join(path, key);
        match key {
            "schedule" => t.schedule = dec.string(v, &p).unwrap_or_default(),
            "command" => t.command = dec.string(v, &p).unwrap_or_default(),
            "service" => t.service = dec.string(v, &p).unwrap_or_default(),
            "concurrency" | "concurrencyPolicy" => {
                if key == "concurrencyPolicy" {
                    dec.d.warn(
                        k.pos,
                        format!("{p}: `concurrencyPolicy` is an old name"),
                        Some("write `concurrency:`".into()),
                    );
                }
                if let Some(c) = dec.string(v, &p) {
                    t.concurrency = match c.to_ascii_lowercase().as_str() {
                        "allow" | "" => Concurrency::Allow,
                        "forbid" => Concurrency::Forbid,
                        "replace" => Concurrency::Replace,
                        _ => {
                            dec.d.error(
                                v.pos,
                                format!("{p}: `{c}` is not a concurrency policy"),
                                Some("write Allow, Forbid or Replace".into()),
                            );
                            Concurrency::Allow
                        }
                    }
                }
            }
            "parallelCount" => t.parallel_count = dec.int(v, &p),
            "annotations" => t.annotations = dec.kv_list(v, &p),
            "policies" => {
                dec.d.warn(
                    k.pos,
                    format!("{p}: `policies` is a Convox v2 (rack) key; Dray ignores it"),
                    Some("remove it".into()),
                );
                t.extra.insert(key.to_string(), dec.raw(v));
            }
            _ => {
                dec.unknown(k, key, path, TIMER_KEYS);
                t.extra.insert(key.to_string(), dec.raw(v));
            }
        }
    }
    // Compatibility (reference §3.1 step 4): keep 5 fields, a lone `?` becomes `*`.
    let fields: Vec<&str> = t
        .schedule
        .split_whitespace()
        .take(5)
        .map(|f| if f.trim() == "?" { "*" } else { f })
        .collect();
    t.schedule = fields.join(" ");
    t
}

fn balancer(dec: &mut Dec, n: &Node, path: &str) -> Balancer {
    let mut b = Balancer::default();
    for (key, k, v) in dec.fields(n, path, "a map with `service:` and `ports:`") {
        let p = join(path, key);
        match key {
            "service" => b.service = dec.string(v, &p).unwrap_or_default(),
            "ports" => {
                for (listen, lk, lv) in dec.entries(
                    v,
                    &p,
                    "a map of listen port → service port",
                    Some("write `5000: 3000` entries".into()),
                    true,
                ) {
                    let lp = join(&p, listen);
                    let Ok(src) = listen.trim().parse::<u16>() else {
                        dec.d.error(
                            lk.pos,
                            format!("{p}: listen port `{listen}` is not a number"),
                            Some(
                                "write `<listen port>: <service port>`, for example `5000: 3000`"
                                    .into(),
                            ),
                        );
                        continue;
                    };
                    let target = match lv.value() {
                        Some(Value::Int(t)) => u16::try_from(t).ok().map(|port| BalancerPort {
                            port,
                            protocol: Protocol::Tcp,
                        }),
                        None if lv.as_map().is_some() => {
                            let mut port = None;
                            let mut protocol = Protocol::Tcp;
                            for (f, fk, fv) in dec.fields(lv, &lp, "a map") {
                                let fp = join(&lp, f);
                                match f {
                                    "port" => {
                                        port = dec.int(fv, &fp).and_then(|i| u16::try_from(i).ok())
                                    }
                                    "protocol" => {
                                        match dec.string(fv, &fp).map(|s| s.to_ascii_uppercase()) {
                                            Some(s) if s == "UDP" => protocol = Protocol::Udp,
                                            Some(s) if s == "TCP" || s.is_empty() => {
                                                protocol = Protocol::Tcp
                                            }
                                            Some(s) => dec.d.error(
                                                fv.pos,
                                                format!("{fp}: protocol `{s}` must be TCP or UDP"),
                                                Some(
                                                    "write `protocol: TCP` or `protocol: UDP`"
                                                        .into(),
                                                ),
                                            ),
                                            None => {}
                                        }
                                    }
                                    _ => dec.unknown(fk, f, &lp, BALANCER_PORT_KEYS),
                                }
                            }
                            port.map(|port| BalancerPort { port, protocol })
                        }
                        _ => None,
                    };
                    match target {
                        Some(t) if t.port > 0 => {
                            b.ports.insert(src, t);
                        }
                        _ => dec.d.error(
                            lv.pos,
                            format!("{lp}: expected a service port, found {}", lv.describe()),
                            Some("write `3000` or `{port: 3000, protocol: UDP}`".into()),
                        ),
                    }
                }
            }
            "whitelist" => match v.value() {
                Some(Value::Null) => {}
                Some(_) => b.whitelist = vec![v.text().unwrap_or_default().to_string()],
                None if v.as_seq().is_some() => b.whitelist = dec.strings(v, &p),
                None => dec.type_err(v, &p, "a CIDR or a list of CIDRs", None),
            },
            "annotations" => b.annotations = dec.kv_list(v, &p),
            _ if key.contains('/') || key.parse::<u16>().is_ok() => {
                dec.d.warn(
                    k.pos,
                    format!("{path}: unknown key `{key}`, ignored (balancer ports go under `ports:`)"),
                    Some("this looks like the older `\"80/http\": \"http://web:4000\"` form; write `service: web` and `ports: {80: 4000}`".into()),
                );
                b.extra.insert(key.to_string(), dec.raw(v));
            }
            _ => {
                dec.unknown(k, key, path, BALANCER_KEYS);
                b.extra.insert(key.to_string(), dec.raw(v));
            }
        }
    }
    b
}

fn configs(dec: &mut Dec, n: &Node, path: &str) -> Vec<Config> {
    let mut out = Vec::new();
    let Some(items) = n.as_seq() else {
        if !n.is_null() {
            dec.type_err(n, path, "a list of {id, name, value}", None);
        }
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        dec.positions.insert(p.clone(), item.pos);
        let mut c = Config::default();
        for (key, k, v) in dec.fields(item, &p, "a map with `id:`") {
            let fp = join(&p, key);
            match key {
                "id" => c.id = dec.string(v, &fp).unwrap_or_default(),
                "name" => c.name = dec.string(v, &fp),
                "value" => c.value = dec.string(v, &fp),
                _ => dec.unknown(k, key, &p, CONFIG_KEYS),
            }
        }
        out.push(c);
    }
    out
}

fn app_settings(dec: &mut Dec, n: &Node, path: &str) -> AppSettings {
    let mut a = AppSettings::default();
    for (key, k, v) in dec.fields(n, path, "a map") {
        let p = join(path, key);
        match key {
            "awsLogs" => {
                let mut l = AwsLogs::default();
                for (lk, lkn, lv) in dec.fields(v, &p, "a map") {
                    let lp = join(&p, lk);
                    match lk {
                        "cwRetention" => l.cw_retention = dec.int(lv, &lp),
                        "disableRetention" => l.disable_retention = dec.boolean(lv, &lp),
                        _ => dec.unknown(lkn, lk, &p, AWS_LOGS_KEYS),
                    }
                }
                a.aws_logs = Some(l);
            }
            _ => dec.unknown(k, key, path, APP_SETTINGS_KEYS),
        }
    }
    a
}

fn budget(dec: &mut Dec, n: &Node, path: &str) -> Budget {
    let mut b = Budget::default();
    for (key, k, v) in dec.fields(n, path, "a map") {
        let p = join(path, key);
        match key {
            "monthlyCapUsd" => b.monthly_cap_usd = dec.float(v, &p),
            "alertThresholdPercent" => b.alert_threshold_percent = dec.float(v, &p),
            "atCapAction" => b.at_cap_action = dec.string(v, &p),
            "atCapWebhookUrl" => b.at_cap_webhook_url = dec.string(v, &p),
            "pricingAdjustment" => b.pricing_adjustment = dec.float(v, &p),
            "neverAutoShutdown" => b.never_auto_shutdown = dec.strings(v, &p),
            "shutdownOrder" => b.shutdown_order = dec.string(v, &p),
            "notifyBeforeMinutes" => b.notify_before_minutes = dec.int(v, &p),
            "shutdownGracePeriod" => b.shutdown_grace_period = dec.string(v, &p),
            "recoveryMode" => b.recovery_mode = dec.string(v, &p),
            _ => dec.unknown(k, key, path, BUDGET_KEYS),
        }
    }
    b
}
