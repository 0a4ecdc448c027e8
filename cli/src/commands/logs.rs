//! `dray logs`: an app's logs, following by default, reconnecting when the rack restarts.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use dray_sdk::{ClientError, LogsOptions};
use futures::StreamExt;

use super::Globals;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this service.
    #[arg(long, short = 's')]
    service: Option<String>,
    /// Only lines newer than this (2m, 1h30m, or an RFC3339 time) [default: 2m].
    #[arg(long)]
    since: Option<String>,
    /// Only lines containing this text.
    #[arg(long)]
    filter: Option<String>,
    /// Only the last N lines before following.
    #[arg(long)]
    tail: Option<usize>,
    /// Print what is there and exit.
    #[arg(long)]
    no_follow: bool,
}

pub async fn run(g: &Globals, args: LogsArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    let mut opts = LogsOptions {
        service: args.service,
        since: args.since,
        tail: args.tail,
        filter: args.filter,
        follow: !args.no_follow,
    };
    // The last second printed and the lines printed within it, to skip them on reconnect.
    let mut last_time = String::new();
    let mut last_lines: Vec<String> = Vec::new();
    let mut out = std::io::stdout();
    let mut reconnecting = false;
    loop {
        let resp = match client.logs(&app, &opts).await {
            Ok(r) => r,
            Err(ClientError::Connect { .. }) if reconnecting => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                let time = line.split(' ').next().unwrap_or("").to_string();
                if reconnecting && time == last_time && last_lines.contains(&line) {
                    continue;
                }
                if time != last_time {
                    last_time = time;
                    last_lines.clear();
                }
                last_lines.push(line.clone());
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
        if !opts.follow {
            return Ok(());
        }
        // The rack went away (restart): resume from the last second printed.
        reconnecting = true;
        opts.tail = None;
        if !last_time.is_empty() {
            opts.since = Some(last_time.clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
