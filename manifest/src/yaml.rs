//! A YAML node tree where every node knows its line and column in the original file.
//!
//! Built from `yaml_rust2`'s event parser. This module owns: anchors and aliases (with an expansion
//! budget against alias bombs), `<<` merge keys (plain or quoted, a map or a list of maps; explicit
//! keys win over merged ones, earlier merge sources win over later ones), keeping map entries in
//! declaration order, and resolving plain scalars the way Convox's `gopkg.in/yaml.v2` does (YAML 1.1:
//! `yes/no/on/off/y/n` are booleans, `0x1f`/`017` are integers, quoted scalars stay strings).
//!
//! Duplicate keys are kept here (both entries) so the decoder can report them with both positions.
//! This module must never know what a service or a timer is; it must never panic on any input.

use crate::diag::{Diags, Pos};
use crate::interpolate::SourceMap;
use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// Deepest nesting accepted (a convox.yml is rarely deeper than 8).
const MAX_DEPTH: usize = 128;
/// Most nodes (after alias expansion) accepted in one manifest.
const MAX_NODES: usize = 200_000;

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    /// Plain style without a `!!str` tag: subject to resolution (null, bool, int, float).
    pub plain: bool,
}

/// The meaning of a scalar under yaml.v2's (YAML 1.1) rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    /// The resolved value of a scalar; `None` for a list or a map.
    pub fn value(&self) -> Option<Value<'_>> {
        match &self.kind {
            Kind::Scalar(s) => Some(if s.plain {
                resolve_plain(&s.text)
            } else {
                Value::Str(&s.text)
            }),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value(), Some(Value::Null))
    }

    /// The raw text of a scalar (what yaml.v2 stores into a `string` field).
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(e) => Some(e),
            _ => None,
        }
    }

    /// The value under `key` in a map (the last one when the key is duplicated).
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .rev()
            .find(|(k, _)| k.text() == Some(key))
            .map(|(_, v)| v)
    }

    /// Follow a path of map keys.
    #[cfg(test)]
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        let mut n = self;
        for k in path {
            n = n.get(k)?;
        }
        Some(n)
    }

    /// A short description for error messages: "a list", "the string \"x\"", …
    pub fn describe(&self) -> String {
        match self.value() {
            None => match self.kind {
                Kind::Seq(_) => "a list".into(),
                _ => "a map".into(),
            },
            Some(Value::Null) => "nothing (null)".into(),
            Some(Value::Bool(_)) => format!("the boolean `{}`", self.text().unwrap_or("")),
            Some(Value::Int(_)) | Some(Value::Float(_)) => {
                format!("the number `{}`", self.text().unwrap_or(""))
            }
            Some(Value::Str(s)) => {
                let mut t: String = s.chars().take(40).collect();
                if s.chars().count() > 40 {
                    t.push('…');
                }
                format!("the string {t:?}")
            }
        }
    }

    /// The node as JSON, for blocks kept as written (scalars resolved, except that only
    /// `true`/`false` become booleans: `Off` or `yes` stay strings, since these blocks are usually
    /// read by YAML 1.2 or JSON tools; map keys as their text; last duplicate wins).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            Kind::Scalar(s) => match self.value() {
                Some(Value::Null) | None => J::Null,
                Some(Value::Bool(b)) => match s.text.to_ascii_lowercase().as_str() {
                    "true" | "false" => J::Bool(b),
                    _ => J::String(s.text.clone()),
                },
                Some(Value::Int(i)) => J::from(i),
                Some(Value::Float(f)) => serde_json::Number::from_f64(f)
                    .map(J::Number)
                    .unwrap_or_else(|| J::String(self.text().unwrap_or("").to_string())),
                Some(Value::Str(s)) => J::String(s.to_string()),
            },
            Kind::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    let key = match k.text() {
                        Some(t) => t.to_string(),
                        None => k.to_json().to_string(),
                    };
                    m.insert(key, v.to_json());
                }
                J::Object(m)
            }
        }
    }
}

/// Resolve a plain scalar as yaml.v2 does.
pub(crate) fn resolve_plain(s: &str) -> Value<'_> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(s) {
        return Value::Int(i);
    }
    if is_float(s) {
        if let Ok(f) = s.replace('_', "").parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(s)
}

/// Go's `strconv.ParseInt(s, 0, 64)` after removing `_` (what yaml.v2 tries first).
fn parse_int(s: &str) -> Option<i64> {
    let plain = s.replace('_', "");
    let (neg, body) = match plain.as_bytes().first()? {
        b'-' => (true, &plain[1..]),
        b'+' => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, d)
    } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// yaml.v2's float pattern: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

enum BuildError {
    Scan(ScanError),
    Other(Pos, String, Option<String>),
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    map: &'a SourceMap,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
}

fn is_str_tag(tag: &Option<Tag>) -> bool {
    matches!(tag, Some(t) if t.suffix == "str" && (t.handle == "!!" || t.handle == "tag:yaml.org,2002:"))
}

fn is_merge_key(k: &Node) -> bool {
    matches!(&k.kind, Kind::Scalar(s) if s.text == "<<")
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event, Marker), BuildError> {
        self.parser.next_token().map_err(BuildError::Scan)
    }

    fn pos(&self, m: &Marker) -> Pos {
        self.map.pos(m.index())
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), BuildError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(BuildError::Other(
                pos,
                format!("the manifest expands to more than {MAX_NODES} YAML nodes"),
                Some("use fewer aliases (`*name`) of large anchors".into()),
            ));
        }
        Ok(())
    }

    fn node(&mut self, ev: Event, mark: Marker, depth: usize) -> Result<(Node, usize), BuildError> {
        let pos = self.pos(&mark);
        if depth > MAX_DEPTH {
            return Err(BuildError::Other(
                pos,
                format!("the manifest is nested more than {MAX_DEPTH} levels deep"),
                None,
            ));
        }
        self.count(1, pos)?;
        let (node, size, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && !is_str_tag(&tag);
                let node = Node {
                    pos,
                    kind: Kind::Scalar(Scalar { text, plain }),
                };
                (node, 1, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                let mut size = 1;
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    let (n, s) = self.node(ev, m, depth + 1)?;
                    size += s;
                    items.push(n);
                }
                (
                    Node {
                        pos,
                        kind: Kind::Seq(items),
                    },
                    size,
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                let mut size = 1;
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let (k, ks) = self.node(ev, m, depth + 1)?;
                    let (ev, m) = self.next()?;
                    let (v, vs) = self.node(ev, m, depth + 1)?;
                    size += ks + vs;
                    entries.push((k, v));
                }
                // A block mapping's start mark is at the first `:`; point at the first key instead.
                let pos = match entries.first() {
                    Some((k, _)) if k.pos.line == pos.line && k.pos.column < pos.column => k.pos,
                    _ => pos,
                };
                let entries = resolve_merges(entries)?;
                (
                    Node {
                        pos,
                        kind: Kind::Map(entries),
                    },
                    size,
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some((n, size)) = self.anchors.get(&id).cloned() else {
                    return Err(BuildError::Other(
                        pos,
                        "this alias refers to an anchor that is not complete yet (an alias cannot refer to its own anchor)".into(),
                        Some("define the anchor (`&name`) on a node before, not around, the alias (`*name`)".into()),
                    ));
                };
                self.count(size, pos)?;
                return Ok((n, size));
            }
            other => {
                return Err(BuildError::Other(
                    pos,
                    format!("unexpected YAML structure ({other:?})"),
                    None,
                ))
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok((node, size))
    }
}

/// Apply `<<` merge keys: merged entries are inserted where the `<<` was, unless an explicit key of
/// the same name exists in this map or an earlier merge source already supplied it.
fn resolve_merges(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, BuildError> {
    if !entries.iter().any(|(k, _)| is_merge_key(k)) {
        return Ok(entries);
    }
    let explicit: HashSet<String> = entries
        .iter()
        .filter(|(k, _)| !is_merge_key(k))
        .filter_map(|(k, _)| k.text().map(str::to_string))
        .collect();
    let mut merged: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        if !is_merge_key(&k) {
            out.push((k, v));
            continue;
        }
        let sources: Vec<&Node> = match &v.kind {
            Kind::Map(_) => vec![&v],
            Kind::Seq(items) if items.iter().all(|i| i.as_map().is_some()) => {
                items.iter().collect()
            }
            _ => {
                return Err(BuildError::Other(
                    v.pos,
                    format!(
                        "a `<<` merge key needs a map or a list of maps, found {}",
                        v.describe()
                    ),
                    Some("write `<<: *anchor` where `&anchor` names a map".into()),
                ))
            }
        };
        for src in sources {
            for (mk, mv) in src.as_map().unwrap_or(&[]) {
                if let Some(t) = mk.text() {
                    if explicit.contains(t) || !merged.insert(t.to_string()) {
                        continue;
                    }
                }
                out.push((mk.clone(), mv.clone()));
            }
        }
    }
    Ok(out)
}

fn syntax_hint(info: &str, line: &str) -> String {
    let i = info.to_ascii_lowercase();
    let value = line
        .split_once(": ")
        .map(|(_, v)| v)
        .or_else(|| line.trim_start().strip_prefix("- "))
        .unwrap_or("")
        .trim_start();
    if value.starts_with("*/") || value.starts_with("* ") || value == "*" {
        format!(
            "quote the value: `\"{value}\"` (a plain value starting with `*` is read as an alias)"
        )
    } else if i.contains("tab") {
        "indent with spaces; YAML does not allow tabs for indentation".into()
    } else if i.contains("mapping values are not allowed") {
        "a `key: value` is in the wrong place: check this line's indentation, or quote a value that contains `: `".into()
    } else if i.contains("cannot start any token") {
        "quote the value (values starting with `@`, `%` or a backtick, and cron schedules starting with `*`, need quotes)".into()
    } else if i.contains("anchor") || i.contains("alias") {
        "define an anchor (`&name`) before using it as an alias (`*name`)".into()
    } else if i.contains("quoted") || i.contains("quote") {
        "close the quote on this value".into()
    } else {
        "check the indentation and quoting on this line and the one before it".into()
    }
}

/// Parse the (interpolated) text. `Ok(None)` means an empty document. Syntax errors are reported in
/// `diags` (at their original position) and give `Err(())`.
pub(crate) fn parse(text: &str, map: &SourceMap, diags: &mut Diags) -> Result<Option<Node>, ()> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        map,
        anchors: HashMap::new(),
        nodes: 0,
    };
    let res = (|| -> Result<Option<Node>, BuildError> {
        loop {
            let (ev, m) = b.next()?;
            match ev {
                Event::StreamStart | Event::Nothing => continue,
                Event::StreamEnd => return Ok(None),
                Event::DocumentStart => break,
                other => {
                    return Err(BuildError::Other(
                        b.pos(&m),
                        format!("unexpected YAML structure ({other:?})"),
                        None,
                    ))
                }
            }
        }
        let (ev, m) = b.next()?;
        let (root, _) = b.node(ev, m, 0)?;
        // The rest of the stream: a second document is ignored (yaml.v2 reads only the first).
        let (ev, _) = b.next()?;
        if ev == Event::DocumentEnd {
            if let Ok((Event::DocumentStart, m)) = b.next() {
                let pos = b.pos(&m);
                diags.warn(
                    pos,
                    "only the first YAML document is used; this one is ignored",
                    Some("remove the `---` line and everything after it, or merge it into the first document".into()),
                );
            }
        }
        Ok(Some(root))
    })();
    match res {
        Ok(root) => Ok(root),
        Err(BuildError::Scan(e)) => {
            let pos = map.pos(e.marker().index());
            diags.error(
                pos,
                format!("invalid YAML: {}", e.info()),
                Some(syntax_hint(e.info(), map.line_text(pos.line))),
            );
            Err(())
        }
        Err(BuildError::Other(pos, msg, hint)) => {
            diags.error(pos, msg, hint);
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interpolate::interpolate_mapped;
    use std::collections::BTreeMap;

    fn tree(text: &str) -> Node {
        let (t, map) = interpolate_mapped(text, &BTreeMap::new());
        let mut d = Diags::new("t.yml");
        let n = parse(&t, &map, &mut d).expect("parses").expect("not empty");
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        n
    }

    #[test]
    fn resolves_like_yaml_v2() {
        for (s, v) in [
            ("yes", Value::Bool(true)),
            ("Off", Value::Bool(false)),
            ("y", Value::Bool(true)),
            ("~", Value::Null),
            ("", Value::Null),
            ("3000", Value::Int(3000)),
            ("-12", Value::Int(-12)),
            ("0x1f", Value::Int(31)),
            ("017", Value::Int(15)),
            ("1_000", Value::Int(1000)),
            ("1.5", Value::Float(1.5)),
            ("1e3", Value::Float(1000.0)),
            ("3-10", Value::Str("3-10")),
            ("https:3000", Value::Str("https:3000")),
            ("08", Value::Float(8.0)),
        ] {
            assert_eq!(resolve_plain(s), v, "{s}");
        }
    }

    #[test]
    fn positions_and_order() {
        let n = tree("services:\n  web:\n    port: 3000\n  api:\n    image: x\n");
        let s = n.get("services").unwrap().as_map().unwrap();
        assert_eq!(s[0].0.text(), Some("web"));
        assert_eq!(s[1].0.text(), Some("api"));
        assert_eq!(s[1].0.pos, Pos { line: 4, column: 3 });
        let port = n.at(&["services", "web", "port"]).unwrap();
        assert_eq!(
            port.pos,
            Pos {
                line: 3,
                column: 11
            }
        );
        assert_eq!(port.value(), Some(Value::Int(3000)));
    }

    #[test]
    fn merges_and_quotes() {
        let n = tree(
            "a: &p\n  command: bash\n  image: ubuntu\nb:\n  \"<<\": *p\n  command: inherit\nc: '3000'\n",
        );
        let b = n.get("b").unwrap();
        assert_eq!(b.get("command").unwrap().text(), Some("inherit"));
        assert_eq!(b.get("image").unwrap().text(), Some("ubuntu"));
        assert_eq!(b.as_map().unwrap().len(), 2);
        assert_eq!(n.get("c").unwrap().value(), Some(Value::Str("3000")));
    }

    #[test]
    fn recursive_alias_is_an_error() {
        let (t, map) = interpolate_mapped("a: &x [*x]\n", &BTreeMap::new());
        let mut d = Diags::new("t.yml");
        assert!(parse(&t, &map, &mut d).is_err());
        assert_eq!(d.errors.len(), 1);
    }
}
