//! The on-disk record format and the in-memory [`LogLine`].
//!
//! Owns encoding and decoding of one record. One record is one line of JSON terminated by `\n`:
//!
//! ```text
//! {"t":"2026-01-15T14:30:00.123456789Z","s":"stdout","m":"GET / 200"}
//! ```
//!
//! * `t`: the time the logger read the line from the pipe (UTC, RFC 3339, always 9 fractional digits,
//!   suffix `Z`);
//! * `s`: `stdout`, `stderr` or `system` (platform events written by the agent, and the logger's own
//!   notices such as dropped-line counts);
//! * `m`: the message without its trailing `\n`, as a JSON string. Invalid UTF-8 is replaced by U+FFFD,
//!   control characters, `"` and `\` are escaped, so no message content can break a record or forge
//!   another one.
//!
//! Keys are always written in this order, but decoders must not rely on it (unknown keys are ignored,
//! so fields can be added later). This module must never do I/O.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A platform event (written with [`crate::append_system`]) or a notice of the logger itself.
    System,
}

impl Stream {
    /// The name used in the `s` field: `stdout`, `stderr` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }

    /// Parses an `s` field value.
    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            "system" => Some(Stream::System),
            _ => None,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One log line of a process (or of an app's system log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the logger read the line (UTC, nanosecond precision).
    pub time: DateTime<Utc>,
    /// Where the line came from.
    pub stream: Stream,
    /// The text without its trailing newline.
    pub message: String,
}

impl LogLine {
    /// Renders the line in Convox's `dray logs` format: `<RFC3339 seconds> <source> <message>`, e.g.
    /// `2026-01-15T14:30:00Z service/web/web-zyxwv GET / 200`. `source` is built by the caller
    /// (`service/<service>/<process-id>` for app processes, `system/...` for platform events).
    pub fn to_convox(&self, source: &str) -> String {
        format!(
            "{} {} {}",
            self.time.to_rfc3339_opts(SecondsFormat::Secs, true),
            source,
            self.message
        )
    }

    /// Encodes the line as one on-disk record, including the trailing `\n`.
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 64);
        encode_record(
            &mut out,
            &format_time(self.time),
            self.stream,
            self.message.as_bytes(),
        );
        out
    }
}

/// Formats a timestamp the way records store it: RFC 3339, UTC `Z`, 9 fractional digits.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Appends one record (with trailing `\n`) to `out`. `time` must come from [`format_time`];
/// `message` may be any bytes (invalid UTF-8 is replaced lossily, a trailing newline is not expected).
pub(crate) fn encode_record(out: &mut Vec<u8>, time: &str, stream: Stream, message: &[u8]) {
    out.extend_from_slice(b"{\"t\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"s\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"m\":\"");
    let text = String::from_utf8_lossy(message);
    escape_json_into(out, text.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Escapes valid UTF-8 `s` as the inside of a JSON string.
fn escape_json_into(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    #[serde(borrow)]
    s: Cow<'a, str>,
    m: String,
}

/// Decodes one record (with or without its trailing `\n`). Returns `None` for anything that is not a
/// well-formed record (for example a line torn by a crash in the middle of a write), which readers skip.
pub fn parse_record(line: &[u8]) -> Option<LogLine> {
    let raw: RawRecord<'_> = serde_json::from_slice(line).ok()?;
    let time = DateTime::parse_from_rfc3339(&raw.t)
        .ok()?
        .with_timezone(&Utc);
    let stream = Stream::parse(&raw.s)?;
    Some(LogLine {
        time,
        stream,
        message: raw.m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_hostile_content() {
        let t = DateTime::parse_from_rfc3339("2026-01-15T14:30:00.000000001Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        for m in [
            "",
            "plain",
            "quote \" backslash \\ tab \t cr \r nl \n",
            "\u{0}\u{1}\u{1f}\u{7f} ctl",
            "{\"t\":\"x\",\"s\":\"stderr\",\"m\":\"forged\"}",
            "ünïcödé ✓ 🦀",
        ] {
            let line = LogLine {
                time: t,
                stream: Stream::Stderr,
                message: m.to_string(),
            };
            let rec = line.to_record();
            assert_eq!(rec.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(rec.last(), Some(&b'\n'));
            assert_eq!(parse_record(&rec), Some(line));
        }
    }

    #[test]
    fn lossy_utf8_and_format() {
        let mut out = Vec::new();
        encode_record(
            &mut out,
            "2026-01-15T14:30:00.123456789Z",
            Stream::Stdout,
            b"a\xffb",
        );
        assert_eq!(
            out,
            "{\"t\":\"2026-01-15T14:30:00.123456789Z\",\"s\":\"stdout\",\"m\":\"a\u{fffd}b\"}\n"
                .as_bytes()
        );
        let line = parse_record(&out).expect("parses");
        assert_eq!(
            line.to_convox("service/web/web-zyxwv"),
            "2026-01-15T14:30:00Z service/web/web-zyxwv a\u{fffd}b"
        );
        assert_eq!(format_time(line.time), "2026-01-15T14:30:00.123456789Z");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_record(b"").is_none());
        assert!(parse_record(b"{\"t\":\"2026-01-15T14:30:00Z\",\"s\":\"stdo").is_none());
        assert!(parse_record(b"{\"t\":\"nope\",\"s\":\"stdout\",\"m\":\"\"}").is_none());
        assert!(parse_record(b"{\"t\":\"2026-01-15T14:30:00Z\",\"s\":\"x\",\"m\":\"\"}").is_none());
    }
}
