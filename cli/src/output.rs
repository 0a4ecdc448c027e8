//! Output in Convox's formats: aligned tables, key/value blocks, `Doing x... OK` progress lines
//! and relative times.

use std::io::Write;

use chrono::{DateTime, Utc};

/// An aligned table: columns separated by two spaces, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            l.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                l.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A key/value block: keys padded to the longest key plus one space; multi-line values are
/// indented under the first line.
pub fn info(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in pairs {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("{k:width$}{first}").trim_end());
        out.push('\n');
        for l in lines {
            out.push_str(&" ".repeat(width));
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Print `Doing x... ` and flush; finish with [`ok`]. On failure the caller's error lands on
/// stderr after it, Convox-style: `Deleting myapp... ERROR: app is locked: myapp`.
pub fn start(what: &str) {
    print!("{what}... ");
    let _ = std::io::stdout().flush();
}

/// Finish a [`start`] line.
pub fn ok() {
    println!("OK");
}

/// A relative time in Docker's `HumanDuration` words, as Convox prints: `2 minutes ago`.
pub fn ago(t: DateTime<Utc>) -> String {
    if t.timestamp() <= 0 {
        return String::new();
    }
    let secs = (Utc::now() - t).num_seconds().max(0);
    format!("{} ago", human_duration(secs))
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let mins = secs / 60;
    let hours = mins / 60;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if mins == 1 {
        "About a minute".into()
    } else if mins < 60 {
        format!("{mins} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// Print a value as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_convox_spacing() {
        let t = table(
            &["APP", "STATUS", "RELEASE"],
            &[vec!["myapp".into(), "running".into(), "RABCDEFGHI".into()]],
        );
        assert_eq!(t, "APP    STATUS   RELEASE\nmyapp  running  RABCDEFGHI\n");
    }

    #[test]
    fn info_pads_keys_and_indents_continuations() {
        let t = info(&[
            ("Name", "myapp".into()),
            ("Release", "".into()),
            ("Env", "A=1\nB=2".into()),
        ]);
        assert_eq!(t, "Name    myapp\nRelease\nEnv     A=1\n        B=2\n");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
