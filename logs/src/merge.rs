//! Interleaving several sources (the processes of an app, its system log) by time, for `dray logs`
//! of a whole app.
//!
//! Owns ordering only: [`merge_sorted`] for one-shot reads (exact, stable by time) and
//! [`merge_follow`] for live followers (best effort: a line is held until every open source has
//! something buffered or until it has waited `window`, then the oldest buffered line goes out).
//! Within one source the order is always kept. It must never read files itself or drop lines.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::format::LogLine;

/// Default hold time of [`merge_follow`].
pub const DEFAULT_MERGE_WINDOW: Duration = Duration::from_millis(250);
/// Capacity of the merged channel.
const MERGE_CHANNEL: usize = 4096;
/// At most this many lines are taken from one source per wake-up, so one busy source cannot
/// starve the others.
const BATCH_PER_SOURCE: usize = 1024;

/// Merges one-shot reads by time; lines with equal times keep source order, then line order.
pub fn merge_sorted<K>(sources: Vec<(K, Vec<LogLine>)>) -> Vec<(K, LogLine)>
where
    K: Clone,
{
    let mut all: Vec<(K, LogLine)> = sources
        .into_iter()
        .flat_map(|(k, lines)| lines.into_iter().map(move |l| (k.clone(), l)))
        .collect();
    all.sort_by_key(|(_, l)| l.time);
    all
}

struct Source<K> {
    key: K,
    rx: mpsc::Receiver<LogLine>,
    open: bool,
    buf: VecDeque<(Instant, LogLine)>,
}

/// Merges live followers (e.g. from [`crate::follow`]) into one channel of `(key, line)`, oldest
/// buffered line first. A line waits at most `window` for slower sources. The merged channel closes
/// when every source has closed and everything was delivered; dropping the returned receiver stops
/// the merge and drops the source receivers (which stops their followers). Must be called inside a
/// tokio runtime (it spawns a task).
pub fn merge_follow<K>(
    sources: Vec<(K, mpsc::Receiver<LogLine>)>,
    window: Duration,
) -> mpsc::Receiver<(K, LogLine)>
where
    K: Clone + Send + 'static,
{
    let (tx, rx) = mpsc::channel(MERGE_CHANNEL);
    let mut sources: Vec<Source<K>> = sources
        .into_iter()
        .map(|(key, rx)| Source {
            key,
            rx,
            open: true,
            buf: VecDeque::new(),
        })
        .collect();
    tokio::spawn(async move {
        loop {
            // Emit everything that is safe (all open sources have a line) or has waited long enough.
            loop {
                let all_have = sources.iter().all(|s| !s.open || !s.buf.is_empty());
                let oldest = sources
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.buf.front().map(|(_, l)| (i, l.time)))
                    .min_by_key(|&(_, t)| t)
                    .map(|(i, _)| i);
                let Some(i) = oldest else { break };
                let Some((arrived, _)) = sources[i].buf.front() else {
                    break;
                };
                if !all_have && arrived.elapsed() < window {
                    break;
                }
                let Some((_, line)) = sources[i].buf.pop_front() else {
                    break;
                };
                if tx.send((sources[i].key.clone(), line)).await.is_err() {
                    return;
                }
            }
            if sources.iter().all(|s| !s.open && s.buf.is_empty()) {
                return;
            }
            let deadline = sources
                .iter()
                .filter_map(|s| s.buf.front().map(|(t, _)| *t + window))
                .min();
            let receive = poll_fn(|cx| {
                let now = Instant::now();
                let mut progressed = false;
                for s in sources.iter_mut().filter(|s| s.open) {
                    for _ in 0..BATCH_PER_SOURCE {
                        match s.rx.poll_recv(cx) {
                            Poll::Ready(Some(line)) => {
                                s.buf.push_back((now, line));
                                progressed = true;
                            }
                            Poll::Ready(None) => {
                                s.open = false;
                                progressed = true;
                                break;
                            }
                            Poll::Pending => break,
                        }
                    }
                }
                if progressed {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = receive => {}
                        _ = tokio::time::sleep_until(d) => {}
                        _ = tx.closed() => return,
                    }
                }
                None => {
                    tokio::select! {
                        _ = receive => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Stream;
    use chrono::{DateTime, Utc};

    fn line(secs: i64, m: &str) -> LogLine {
        LogLine {
            time: DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default(),
            stream: Stream::Stdout,
            message: m.to_string(),
        }
    }

    #[test]
    fn sorted_merge_is_stable() {
        let merged = merge_sorted(vec![
            ("a", vec![line(1, "a1"), line(3, "a3"), line(3, "a3b")]),
            ("b", vec![line(2, "b2"), line(3, "b3")]),
        ]);
        let msgs: Vec<_> = merged.iter().map(|(_, l)| l.message.as_str()).collect();
        assert_eq!(msgs, ["a1", "b2", "a3", "a3b", "b3"]);
    }

    #[tokio::test]
    async fn live_merge_orders_backlog_and_flushes_quiet_sources() {
        let (ta, ra) = mpsc::channel(16);
        let (tb, rb) = mpsc::channel(16);
        let (_tc, rc) = mpsc::channel::<LogLine>(16); // a quiet source that never closes
        for (t, m) in [(1, "a1"), (4, "a4")] {
            ta.send(line(t, m)).await.expect("send");
        }
        for (t, m) in [(2, "b2"), (3, "b3")] {
            tb.send(line(t, m)).await.expect("send");
        }
        drop(ta);
        let mut out = merge_follow(
            vec![("a", ra), ("b", rb), ("c", rc)],
            Duration::from_millis(50),
        );
        let mut got = Vec::new();
        for _ in 0..4 {
            let next = tokio::time::timeout(Duration::from_secs(2), out.recv()).await;
            let (_, l) = next.expect("in time").expect("open");
            got.push(l.message);
        }
        assert_eq!(got, ["a1", "b2", "b3", "a4"]);
        tb.send(line(5, "b5")).await.expect("send");
        let next = tokio::time::timeout(Duration::from_secs(2), out.recv()).await;
        assert_eq!(next.expect("in time").expect("open").1.message, "b5");
    }
}
