//! Planner bench: one planning pass (`dray_agent::deploy::planner::plan`) for N services x 10
//! processes, in the middle of a rolling deploy (the busiest pass: every service has old and
//! new processes, some ready, some starting). Target (issue 9): <= 5 ms for 1,000 x 10.
//!
//! `cargo bench -p dray-agent --bench planner` prints a table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use dray_agent::deploy::planner::{plan, Deploy, Desired, Links, Observed, ServiceSpec, Target};
use dray_sdk::ProcessStatus;

fn setup(services: usize, per: usize) -> (Desired, Vec<Observed>) {
    let specs: Vec<ServiceSpec> = (0..services)
        .map(|i| ServiceSpec {
            name: format!("svc{i}"),
            count: per as u32,
            agent: false,
            minimum: 50,
            maximum: 200,
            cpu: 250,
            memory: 512,
        })
        .collect();
    let target = |r: &str| Target {
        release: r.into(),
        services: Ok(specs.clone()),
        links: Links::Ready,
    };
    let now = Utc::now();
    let desired = Desired {
        app: "bench".into(),
        active: Some(target("R1")),
        deploy: Some(Deploy {
            target: target("R2"),
            started: now,
            timeout: 600,
            cancel_requested: false,
        }),
        scale: BTreeMap::new(),
        restarts: BTreeMap::new(),
    };
    let mut observed = Vec::new();
    for i in 0..services {
        for j in 0..per {
            // Half old and ready, half new: some ready, some starting.
            let (release, status) = if j < per / 2 {
                ("R1", ProcessStatus::Running)
            } else if j % 3 == 0 {
                ("R2", ProcessStatus::Starting)
            } else {
                ("R2", ProcessStatus::Running)
            };
            observed.push(Observed {
                id: format!("svc{i}-{j:05}"),
                service: format!("svc{i}"),
                release: release.into(),
                instance: "local".into(),
                cpu: 250,
                memory: 512,
                status,
                crashes: 0,
                exit_code: None,
                started: now,
                one_off: false,
            });
        }
    }
    (desired, observed)
}

fn main() {
    let instances = vec!["local".to_string()];
    println!("| services x processes | median | p99 | actions |");
    println!("|---|---|---|---|");
    for (services, per) in [(10, 10), (100, 10), (1000, 10)] {
        let (desired, observed) = setup(services, per);
        let mut times: Vec<Duration> = Vec::new();
        let mut actions = 0;
        let rounds = if services >= 1000 { 50 } else { 200 };
        for _ in 0..rounds {
            let t0 = Instant::now();
            let p = plan(&desired, &observed, &instances, Utc::now());
            times.push(t0.elapsed());
            actions = p.actions.len();
        }
        times.sort();
        let median = times[times.len() / 2];
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        println!(
            "| {services} x {per} | {:.3} ms | {:.3} ms | {actions} |",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
