//! `GET /apps/{app}/logs`: an app's process output and platform events, in Convox's line format
//! (`2026-01-15T14:30:00Z service/web/web-zyxwv message`), as a chunked text stream that keeps
//! going with `follow=true`.
//!
//! Lines come from the log files the shim's logger writes (see `dray_logs`), never from the
//! processes themselves, so following survives process restarts, and a client that reconnects
//! after an agent restart resumes with `since`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use dray_logs::{Follower, LogLine, ReadOptions};

use super::docs::{param, RouteDoc};
use super::{ApiError, ApiState, Params, Routes};

pub(super) fn routes(r: Routes) -> Routes {
    r.add(
        RouteDoc {
            method: "GET",
            path: "/apps/{app}/logs",
            operation: "AppLogs",
            summary: "stream an app's logs as text lines (`TIME service/SERVICE/PROCESS message`)",
            auth: true,
            query: &[
                param!("service", "string", false, "only this service"),
                param!(
                    "since",
                    "string",
                    false,
                    "only lines newer than this duration (2m, 1h30m) or RFC3339 time; default 2m"
                ),
                param!(
                    "tail",
                    "integer",
                    false,
                    "only the last N lines before following"
                ),
                param!("filter", "string", false, "only lines containing this text"),
                param!(
                    "follow",
                    "boolean",
                    false,
                    "keep streaming new lines (default true)"
                ),
            ],
            body: &[],
            response: "Text",
            errors: &[400, 404],
        },
        get(logs),
    )
}

/// Parse `2m`, `1h30m`, `45s`, `1d` or an RFC3339 time into the earliest time to show.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            i += 1;
            continue;
        }
        let (unit, len) = if chars[i..].starts_with(&['m', 's']) {
            (0.001, 2)
        } else {
            match c {
                's' => (1.0, 1),
                'm' => (60.0, 1),
                'h' => (3600.0, 1),
                'd' => (86400.0, 1),
                _ => {
                    return Err(format!(
                        "invalid since {s:?}: use a duration like 2m, 1h30m or an RFC3339 time"
                    ))
                }
            }
        };
        let n: f64 = num.parse().map_err(|_| {
            format!("invalid since {s:?}: use a duration like 2m, 1h30m or an RFC3339 time")
        })?;
        total += n * unit;
        num.clear();
        any = true;
        i += len;
    }
    if !num.is_empty() || !any {
        return Err(format!(
            "invalid since {s:?}: use a duration like 2m, 1h30m or an RFC3339 time"
        ));
    }
    Ok(now - chrono::Duration::milliseconds((total * 1000.0) as i64))
}

/// The source label of a log directory: `service/<svc>/<pid>`, `resource/<name>/<object>` or
/// `system/dray/<app>`.
fn source(app: &str, dir_name: &str) -> String {
    if dir_name == crate::logs::SYSTEM_DIR {
        return format!("system/dray/{app}");
    }
    // Resource containers: `resource.<name>.<object>` (service names have no dots).
    if let Some(rest) = dir_name.strip_prefix("resource.") {
        return format!("resource/{}", rest.replacen('.', "/", 1));
    }
    let service = dir_name
        .rsplit_once('-')
        .map(|(s, _)| s)
        .unwrap_or(dir_name);
    format!("service/{service}/{dir_name}")
}

fn log_dirs(root: &std::path::Path, service: Option<&str>) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if !e.path().is_dir() {
            continue;
        }
        let is_system = name == crate::logs::SYSTEM_DIR;
        if let Some(svc) = service {
            let matches = name.rsplit_once('-').is_some_and(|(s, _)| s == svc);
            if !matches && !is_system {
                continue;
            }
        }
        out.push((name, e.path()));
    }
    out.sort();
    out
}

async fn logs(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    s.controllers.app(&app).await?;
    let now = Utc::now();
    let since = match p.get("since") {
        Some(v) => Some(parse_since(v, now).map_err(ApiError::bad_request)?),
        None if p.get("tail").is_some() => None,
        None => Some(now - chrono::Duration::minutes(2)),
    };
    let tail = p.usize("tail")?;
    let filter = p.get("filter").map(str::to_string);
    let follow = p.bool("follow")?.unwrap_or(true);
    let service = p.get("service").map(str::to_string);
    let root = crate::logs::app_dir(s.controllers.config(), &app);
    let opts = ReadOptions {
        since,
        tail: None,
        filter: filter.clone(),
    };

    // The existing lines, merged by time, then the tail over all of them.
    let mut followers: HashMap<String, (String, Follower)> = HashMap::new();
    let mut first: Vec<(String, LogLine)> = Vec::new();
    for (name, dir) in log_dirs(&root, service.as_deref()) {
        let mut f = Follower::new(&dir, opts.clone());
        let src = source(&app, &name);
        if let Ok(lines) = f.poll() {
            first.extend(lines.into_iter().map(|l| (src.clone(), l)));
        }
        followers.insert(name, (src, f));
    }
    first.sort_by_key(|a| a.1.time);
    if let Some(t) = tail {
        let skip = first.len().saturating_sub(t);
        first.drain(..skip);
    }
    let initial: String = first
        .iter()
        .map(|(src, l)| l.to_convox(src) + "\n")
        .collect();

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(256);
    let _ = tx.send(Ok(initial)).await;
    if follow {
        let new_opts = ReadOptions {
            since: None,
            tail: None,
            filter,
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                if tx.is_closed() {
                    return;
                }
                for (name, dir) in log_dirs(&root, service.as_deref()) {
                    followers.entry(name.clone()).or_insert_with(|| {
                        (source(&app, &name), Follower::new(&dir, new_opts.clone()))
                    });
                }
                let mut batch: BTreeMap<(DateTime<Utc>, usize), String> = BTreeMap::new();
                let mut n = 0;
                for (src, f) in followers.values_mut() {
                    if let Ok(lines) = f.poll() {
                        for l in lines {
                            batch.insert((l.time, n), l.to_convox(src) + "\n");
                            n += 1;
                        }
                    }
                }
                if !batch.is_empty() {
                    let text: String = batch.into_values().collect();
                    if tx.send(Ok(text)).await.is_err() {
                        return;
                    }
                }
            }
        });
    } else {
        drop(tx);
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_go_durations_and_times() {
        let now = Utc::now();
        assert_eq!(
            parse_since("2m", now).unwrap(),
            now - chrono::Duration::minutes(2)
        );
        assert_eq!(
            parse_since("1h30m", now).unwrap(),
            now - chrono::Duration::minutes(90)
        );
        assert_eq!(
            parse_since("500ms", now).unwrap(),
            now - chrono::Duration::milliseconds(500)
        );
        assert!(parse_since("2026-01-15T14:30:00Z", now).is_ok());
        for bad in ["", "m", "2x", "10"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        assert_eq!(source("a", "web-abcde"), "service/web/web-abcde");
        assert_eq!(source("a", "resource.db.postgres"), "resource/db/postgres");
        assert_eq!(source("a", "my-svc-abcde"), "service/my-svc/my-svc-abcde");
        assert_eq!(source("a", "system"), "system/dray/a");
    }
}
