//! `${VAR}` interpolation over the raw manifest text, and the map back to original positions.
//!
//! Convox interpolates before parsing YAML (reference §3.1 step 1): every match of the regex
//! `\$\{([^}]*?)\}` is replaced by `env[NAME]`, or by the empty string when NAME is unset. There is no
//! `${X:-default}` syntax (the whole `X:-default` is looked up as a key), `$X` without braces is left
//! alone, and the match may span lines (`[^}]` matches a newline in Go's regexp).
//!
//! This module owns that substitution and the [`SourceMap`] that turns a character index in the
//! interpolated text (what the YAML parser sees) back into a line and column of the file the user wrote.
//! It must never parse YAML or know about manifest keys.

use crate::diag::Pos;
use std::collections::BTreeMap;

/// Replace every `${NAME}` in `text` with `env[NAME]` (empty when unset), exactly as Convox does.
pub fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
    interpolate_mapped(text, env).0
}

/// One substitution: the byte range it replaced in the original text and the range its value occupies
/// in the interpolated text.
#[derive(Debug, Clone, Copy)]
struct Replacement {
    orig_start: usize,
    orig_end: usize,
    new_start: usize,
    new_end: usize,
}

/// Maps positions in the interpolated text back to the original text.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap {
    /// Byte offset of every character of the interpolated text (plus one past the end).
    new_char_bytes: Vec<usize>,
    replacements: Vec<Replacement>,
    /// Byte offsets where each original line starts.
    orig_line_starts: Vec<usize>,
    original: String,
    /// `(byte offset of the `$`, name)` of every `${NAME}` whose NAME was not set.
    pub unset: Vec<(usize, String)>,
}

impl SourceMap {
    /// The original position of the character at `char_index` in the interpolated text. A position
    /// inside a substituted value maps to the `$` of its `${…}`.
    pub fn pos(&self, char_index: usize) -> Pos {
        let new_byte = match self.new_char_bytes.get(char_index) {
            Some(b) => *b,
            None => self.new_char_bytes.last().copied().unwrap_or(0),
        };
        let orig_byte = self.orig_byte(new_byte);
        self.orig_pos(orig_byte)
    }

    /// The text of line `line` (1-based) of the original file, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self
            .orig_line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let rest = self.original.get(start..).unwrap_or("");
        rest.split('\n').next().unwrap_or("").trim_end_matches('\r')
    }

    fn orig_byte(&self, new_byte: usize) -> usize {
        // The last replacement starting at or before this byte decides the shift.
        let idx = self
            .replacements
            .partition_point(|r| r.new_start <= new_byte);
        if idx == 0 {
            return new_byte;
        }
        let r = self.replacements[idx - 1];
        if new_byte < r.new_end {
            r.orig_start
        } else {
            r.orig_end + (new_byte - r.new_end)
        }
    }

    /// Line and column of a byte offset of the original text.
    pub fn orig_pos(&self, orig_byte: usize) -> Pos {
        let orig_byte = orig_byte.min(self.original.len());
        let line_idx = self
            .orig_line_starts
            .partition_point(|s| *s <= orig_byte)
            .saturating_sub(1);
        let line_start = self.orig_line_starts.get(line_idx).copied().unwrap_or(0);
        let column = self
            .original
            .get(line_start..orig_byte)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        Pos {
            line: line_idx + 1,
            column,
        }
    }
}

/// Interpolate and build the map back to original positions.
pub(crate) fn interpolate_mapped(
    text: &str,
    env: &BTreeMap<String, String>,
) -> (String, SourceMap) {
    let mut out = String::with_capacity(text.len());
    let mut replacements = Vec::new();
    let mut unset = Vec::new();
    let mut rest = 0usize;
    while let Some(found) = text[rest..].find("${") {
        let start = rest + found;
        let name_start = start + 2;
        // `[^}]*?\}`: the first `}` after `${` closes it. Without one there is no further match either.
        let Some(close) = text[name_start..].find('}') else {
            break;
        };
        let end = name_start + close + 1;
        let name = &text[name_start..end - 1];
        out.push_str(&text[rest..start]);
        let value = match env.get(name) {
            Some(v) => v.as_str(),
            None => {
                unset.push((start, name.to_string()));
                ""
            }
        };
        let new_start = out.len();
        out.push_str(value);
        replacements.push(Replacement {
            orig_start: start,
            orig_end: end,
            new_start,
            new_end: out.len(),
        });
        rest = end;
    }
    out.push_str(&text[rest..]);

    let mut new_char_bytes: Vec<usize> = out.char_indices().map(|(b, _)| b).collect();
    new_char_bytes.push(out.len());
    let mut orig_line_starts = vec![0];
    orig_line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let map = SourceMap {
        new_char_bytes,
        replacements,
        orig_line_starts,
        original: text.to_string(),
        unset,
    };
    (out, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replaces_set_and_unset() {
        let e = env(&[("HOST", "example.org"), ("X:-d", "odd")]);
        assert_eq!(
            interpolate("a ${HOST} b ${NOPE} c", &e),
            "a example.org b  c"
        );
        assert_eq!(interpolate("${X:-d}", &e), "odd");
        assert_eq!(interpolate("$HOST $oauthtoken", &e), "$HOST $oauthtoken");
        assert_eq!(interpolate("$${HOST}", &e), "$example.org");
        assert_eq!(interpolate("${a${HOST}}", &e), "}");
        assert_eq!(interpolate("${unclosed", &e), "${unclosed");
        assert_eq!(interpolate("${multi\nline}x", &e), "x");
    }

    #[test]
    fn maps_positions_back() {
        let e = env(&[("A", "loooooong"), ("B", "")]);
        let text = "x: ${A} y\nz: ${B}é w\n";
        let (out, map) = interpolate_mapped(text, &e);
        assert_eq!(out, "x: loooooong y\nz: é w\n");
        // `y` is at column 13 of the interpolated line 1, column 9 of the original.
        let y = out.chars().position(|c| c == 'y').unwrap();
        assert_eq!(map.pos(y), Pos { line: 1, column: 9 });
        // inside the value maps to the `$`
        assert_eq!(map.pos(5), Pos { line: 1, column: 4 });
        let w = out.chars().position(|c| c == 'w').unwrap();
        assert_eq!(
            map.pos(w),
            Pos {
                line: 2,
                column: 10
            }
        );
    }
}
