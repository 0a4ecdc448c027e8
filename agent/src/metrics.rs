//! Prometheus metrics: counters, gauges and histograms with labels, rendered in the text
//! exposition format at `GET /metrics`.
//!
//! A deliberately small registry (no external crate): metrics are registered once by name and
//! updated lock-free where it matters (one mutex per metric family, held for an increment).
//! This module owns the metric types and their rendering; it must never decide what is measured.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// Label values of one series, in the order of the family's label names.
type LabelValues = Vec<String>;

#[derive(Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram(Vec<f64>),
}

#[derive(Debug, Default, Clone)]
struct HistogramData {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    labels: &'static [&'static str],
    kind: Kind,
    values: Mutex<BTreeMap<LabelValues, f64>>,
    histograms: Mutex<BTreeMap<LabelValues, HistogramData>>,
}

/// A set of metric families.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<&'static str, Arc<Family>>>>,
}

/// Default latency buckets in seconds (1 ms to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A handle to one registered family.
#[derive(Debug, Clone)]
pub struct Metric(Arc<Family>);

impl Registry {
    fn register(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        kind: Kind,
    ) -> Metric {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name).or_insert_with(|| {
            Arc::new(Family {
                help,
                labels,
                kind,
                values: Mutex::new(BTreeMap::new()),
                histograms: Mutex::new(BTreeMap::new()),
            })
        });
        Metric(family.clone())
    }

    /// A monotonically increasing counter.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Metric {
        self.register(name, help, labels, Kind::Counter)
    }

    /// A value that goes up and down.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Metric {
        self.register(name, help, labels, Kind::Gauge)
    }

    /// A histogram with the given upper bounds (seconds, for latencies).
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &[f64],
    ) -> Metric {
        self.register(name, help, labels, Kind::Histogram(buckets.to_vec()))
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, f) in families.iter() {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match &f.kind {
                Kind::Counter | Kind::Gauge => {
                    let values = f.values.lock().unwrap_or_else(|p| p.into_inner());
                    for (lv, v) in values.iter() {
                        let _ = writeln!(out, "{name}{} {}", labels(f.labels, lv, None), num(*v));
                    }
                }
                Kind::Histogram(bounds) => {
                    let hs = f.histograms.lock().unwrap_or_else(|p| p.into_inner());
                    for (lv, h) in hs.iter() {
                        let mut cumulative = 0;
                        for (i, b) in bounds.iter().enumerate() {
                            cumulative += h.buckets.get(i).copied().unwrap_or(0);
                            let le = num(*b);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {cumulative}",
                                labels(f.labels, lv, Some(&le))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            labels(f.labels, lv, Some("+Inf")),
                            h.count
                        );
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            labels(f.labels, lv, None),
                            num(h.sum)
                        );
                        let _ = writeln!(
                            out,
                            "{name}_count{} {}",
                            labels(f.labels, lv, None),
                            h.count
                        );
                    }
                }
            }
        }
        out
    }
}

impl Metric {
    fn key(&self, values: &[&str]) -> LabelValues {
        values.iter().map(|s| s.to_string()).collect()
    }

    /// Add `by` to a counter or gauge.
    pub fn add(&self, values: &[&str], by: f64) {
        let mut m = self.0.values.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(self.key(values)).or_insert(0.0) += by;
    }

    /// Increment a counter by one.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1.0);
    }

    /// Set a gauge.
    pub fn set(&self, values: &[&str], v: f64) {
        let mut m = self.0.values.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(self.key(values), v);
    }

    /// Replace every series of a gauge at once (for gauges computed from a snapshot).
    pub fn replace_all(&self, series: impl IntoIterator<Item = (Vec<String>, f64)>) {
        let mut m = self.0.values.lock().unwrap_or_else(|p| p.into_inner());
        m.clear();
        m.extend(series);
    }

    /// Record one observation in a histogram.
    pub fn observe(&self, values: &[&str], v: f64) {
        let Kind::Histogram(bounds) = &self.0.kind else {
            return;
        };
        let mut hs = self.0.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let h = hs.entry(self.key(values)).or_insert_with(|| HistogramData {
            buckets: vec![0; bounds.len()],
            ..HistogramData::default()
        });
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += v;
        h.count += 1;
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let r = Registry::default();
        let c = r.counter("dray_things_total", "Things.", &["kind"]);
        c.inc(&["a"]);
        c.add(&["a"], 2.0);
        let h = r.histogram("dray_latency_seconds", "Latency.", &["route"], &[0.1, 1.0]);
        h.observe(&["/x"], 0.05);
        h.observe(&["/x"], 0.5);
        h.observe(&["/x"], 5.0);
        let text = r.render();
        assert!(text.contains("# TYPE dray_things_total counter\n"));
        assert!(text.contains("dray_things_total{kind=\"a\"} 3\n"));
        assert!(text.contains("dray_latency_seconds_bucket{route=\"/x\",le=\"0.1\"} 1\n"));
        assert!(text.contains("dray_latency_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"));
        assert!(text.contains("dray_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("dray_latency_seconds_count{route=\"/x\"} 3\n"));
    }
}
