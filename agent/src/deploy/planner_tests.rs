//! Table tests of the planner, in the manner of Nomad's `scheduler/reconcile_test.go`: each
//! case is desired state x observed processes -> the plan, written as a one-line summary
//! (`start web@R2 x3; stop web-a web-b; commit R2`). Then a simulation that runs whole rolling
//! deploys against a fake node and checks the bounds at every step.

use super::*;
use chrono::TimeZone;
use dray_sdk::ProcessStatus as S;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn svc(name: &str, count: u32) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        count,
        agent: false,
        minimum: 50,
        maximum: 200,
        cpu: 250,
        memory: 512,
    }
}

fn bounded(name: &str, count: u32, minimum: u32, maximum: u32) -> ServiceSpec {
    ServiceSpec {
        minimum,
        maximum,
        ..svc(name, count)
    }
}

fn agent(name: &str) -> ServiceSpec {
    ServiceSpec {
        agent: true,
        minimum: 0,
        maximum: 100,
        ..svc(name, 1)
    }
}

fn target(release: &str, services: Vec<ServiceSpec>) -> Target {
    Target {
        release: release.into(),
        services: Ok(services),
        links: Links::Ready,
    }
}

fn app(active: Option<Target>) -> Desired {
    Desired {
        app: "myapp".into(),
        active,
        deploy: None,
        scale: BTreeMap::new(),
        restarts: BTreeMap::new(),
    }
}

fn deploying(active: Option<Target>, to: Target) -> Desired {
    Desired {
        deploy: Some(Deploy {
            target: to,
            started: t(0),
            timeout: 600,
            cancel_requested: false,
        }),
        ..app(active)
    }
}

fn p(id: &str, service: &str, release: &str, status: ProcessStatus) -> Observed {
    Observed {
        id: id.into(),
        service: service.into(),
        release: release.into(),
        instance: "local".into(),
        cpu: 250,
        memory: 512,
        status,
        crashes: 0,
        exit_code: None,
        started: t(0),
        one_off: false,
    }
}

/// `n` processes `<prefix>-0..n` of a service and release, all with one status.
fn many(
    prefix: &str,
    service: &str,
    release: &str,
    n: usize,
    status: ProcessStatus,
) -> Vec<Observed> {
    (0..n)
        .map(|i| {
            let mut o = p(&format!("{prefix}-{i}"), service, release, status);
            o.started = t(i as i64);
            o
        })
        .collect()
}

fn local() -> Vec<String> {
    vec!["local".to_string()]
}

/// The plan as one line: starts grouped by service@release, stops sorted, then the outcome.
fn summary(plan: &Plan) -> String {
    let mut parts = Vec::new();
    let mut starts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (s, r) in plan.starts() {
        *starts.entry((s.to_string(), r.to_string())).or_default() += 1;
    }
    for ((s, r), n) in starts {
        parts.push(format!("start {s}@{r} x{n}"));
    }
    let mut stops: Vec<&str> = plan.stops().collect();
    stops.sort();
    if !stops.is_empty() {
        parts.push(format!("stop {}", stops.join(" ")));
    }
    for a in &plan.actions {
        match a {
            Action::Commit { release } => parts.push(format!("commit {release}")),
            Action::RollBack { release, reason } => {
                parts.push(format!("rollback {release}: {reason}"))
            }
            _ => {}
        }
    }
    if let Some(w) = &plan.waiting {
        parts.push(format!("waiting: {w}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

struct Case {
    name: &'static str,
    desired: Desired,
    observed: Vec<Observed>,
    now: DateTime<Utc>,
    want: &'static str,
}

fn case(name: &'static str, desired: Desired, observed: Vec<Observed>, want: &'static str) -> Case {
    Case {
        name,
        desired,
        observed,
        now: t(10),
        want,
    }
}

fn cat(parts: Vec<Vec<Observed>>) -> Vec<Observed> {
    parts.into_iter().flatten().collect()
}

#[test]
fn table() {
    let r1 = |services| Some(target("R1", services));
    let mut cases = vec![
        // Steady state and scaling.
        case("nothing promoted, nothing runs", app(None), vec![], "-"),
        case(
            "nothing promoted stops leftovers",
            app(None),
            many("web", "web", "R0", 2, S::Running),
            "stop web-0 web-1",
        ),
        case("first start of a service", app(r1(vec![svc("web", 3)])), vec![], "start web@R1 x3"),
        case(
            "converged: nothing to do",
            app(r1(vec![svc("web", 2)])),
            many("web", "web", "R1", 2, S::Running),
            "-",
        ),
        case(
            "starting processes are not started again",
            app(r1(vec![svc("web", 2)])),
            many("web", "web", "R1", 2, S::Starting),
            "-",
        ),
        case(
            "crashed processes restart in place (the node's job), not replaced",
            app(r1(vec![svc("web", 2)])),
            many("web", "web", "R1", 2, S::Crashed),
            "-",
        ),
        case(
            "scale up from 2 to 5",
            app(r1(vec![svc("web", 5)])),
            many("web", "web", "R1", 2, S::Running),
            "start web@R1 x3",
        ),
        case(
            "scale down stops the newest first",
            app(r1(vec![svc("web", 1)])),
            many("web", "web", "R1", 3, S::Running),
            "stop web-1 web-2",
        ),
        case(
            "scale down stops the not-ready first",
            app(r1(vec![svc("web", 2)])),
            cat(vec![many("web", "web", "R1", 2, S::Running), vec![p("web-x", "web", "R1", S::Crashed)]]),
            "stop web-x",
        ),
        case(
            "count 0 stops everything",
            app(r1(vec![svc("web", 0)])),
            many("web", "web", "R1", 2, S::Running),
            "stop web-0 web-1",
        ),
        case(
            "a stopped process is replaced while it stops (the surge allows it)",
            app(r1(vec![svc("web", 2)])),
            cat(vec![many("web", "web", "R1", 1, S::Running), vec![p("web-s", "web", "R1", S::Stopping)]]),
            "start web@R1 x1",
        ),
        case(
            "a service the release lost is stopped",
            app(r1(vec![svc("web", 1)])),
            cat(vec![many("web", "web", "R1", 1, S::Running), many("old", "worker", "R0", 1, S::Running)]),
            "stop old-0",
        ),
        case(
            "processes of another release with no deploy are replaced",
            app(r1(vec![svc("web", 2)])),
            many("web", "web", "R0", 2, S::Running),
            "start web@R1 x2",
        ),
        case(
            "one-off processes are never touched",
            app(r1(vec![svc("web", 0)])),
            vec![Observed {
                one_off: true,
                ..p("web-run", "web", "R1", S::Running)
            }],
            "-",
        ),
        case(
            "stopping processes are not stopped again",
            app(r1(vec![svc("web", 0)])),
            vec![p("web-s", "web", "R1", S::Stopping)],
            "-",
        ),
        // Live scale.
        case(
            "the live count wins over the manifest",
            Desired {
                scale: BTreeMap::from([("web".into(), Scale { count: Some(4), ..Default::default() })]),
                ..app(r1(vec![svc("web", 1)]))
            },
            many("web", "web", "R1", 1, S::Running),
            "start web@R1 x3",
        ),
        case(
            "new limits replace processes: new first, old stay until ready",
            Desired {
                scale: BTreeMap::from([("web".into(), Scale { memory: Some(64), ..Default::default() })]),
                ..app(r1(vec![svc("web", 2)]))
            },
            many("web", "web", "R1", 2, S::Running),
            "start web@R1 x2",
        ),
        case(
            "new limits: a ready new process lets an old one go",
            Desired {
                scale: BTreeMap::from([("web".into(), Scale { memory: Some(64), ..Default::default() })]),
                ..app(r1(vec![svc("web", 2)]))
            },
            cat(vec![
                many("web", "web", "R1", 2, S::Running),
                vec![Observed { memory: 64, ..p("new-0", "web", "R1", S::Running) }],
                vec![Observed { memory: 64, ..p("new-1", "web", "R1", S::Starting) }],
            ]),
            "stop web-0",
        ),
        // Rolling deploys, 50/200 (defaults).
        case(
            "deploy 50/200 count 10: surge all 10, stop none yet",
            deploying(r1(vec![svc("web", 10)]), target("R2", vec![svc("web", 10)])),
            many("old", "web", "R1", 10, S::Running),
            "start web@R2 x10",
        ),
        case(
            "deploy 50/200 count 10: 4 new ready let the 4 oldest go",
            deploying(r1(vec![svc("web", 10)]), target("R2", vec![svc("web", 10)])),
            cat(vec![
                many("old", "web", "R1", 10, S::Running),
                many("new", "web", "R2", 4, S::Running),
                many("nw2", "web", "R2", 6, S::Starting),
            ]),
            "stop old-0 old-1 old-2 old-3",
        ),
        case(
            "deploy 50/200 count 10: all new ready commits",
            deploying(r1(vec![svc("web", 10)]), target("R2", vec![svc("web", 10)])),
            cat(vec![many("new", "web", "R2", 10, S::Running), many("old", "web", "R1", 3, S::Stopping)]),
            "commit R2",
        ),
        case(
            "deploy 50/200 count 1: surge one, keep the old until the new is ready",
            deploying(r1(vec![svc("web", 1)])
                , target("R2", vec![svc("web", 1)])),
            many("old", "web", "R1", 1, S::Running),
            "start web@R2 x1",
        ),
        case(
            "deploy 50/200 count 1: new ready, old goes, commit",
            deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])),
            cat(vec![many("old", "web", "R1", 1, S::Running), many("new", "web", "R2", 1, S::Running)]),
            "stop old-0; commit R2",
        ),
        // 50/150: the surge is too small, the minimum makes room.
        case(
            "deploy 50/150 count 10: surge 5 and stop 5 to make room",
            deploying(r1(vec![bounded("web", 10, 50, 150)]), target("R2", vec![bounded("web", 10, 50, 150)])),
            many("old", "web", "R1", 10, S::Running),
            "start web@R2 x5; stop old-0 old-1 old-2 old-3 old-4",
        ),
        case(
            "deploy 50/150 count 10: while 5 stop, nothing more moves",
            deploying(r1(vec![bounded("web", 10, 50, 150)]), target("R2", vec![bounded("web", 10, 50, 150)])),
            cat(vec![
                many("old", "web", "R1", 5, S::Running),
                many("gone", "web", "R1", 5, S::Stopping),
                many("new", "web", "R2", 5, S::Starting),
            ]),
            "-",
        ),
        // 100/200: never below the count.
        case(
            "deploy 100/200 count 10: surge 10",
            deploying(r1(vec![bounded("web", 10, 100, 200)]), target("R2", vec![bounded("web", 10, 100, 200)])),
            many("old", "web", "R1", 10, S::Running),
            "start web@R2 x10",
        ),
        case(
            "deploy 100/200 count 10: one new ready lets exactly one old go",
            deploying(r1(vec![bounded("web", 10, 100, 200)]), target("R2", vec![bounded("web", 10, 100, 200)])),
            cat(vec![
                many("old", "web", "R1", 10, S::Running),
                many("new", "web", "R2", 1, S::Running),
                many("nw2", "web", "R2", 9, S::Starting),
            ]),
            "stop old-0",
        ),
        case(
            "deploy 100/200: an old process that crashed goes at once",
            deploying(r1(vec![bounded("web", 2, 100, 200)]), target("R2", vec![bounded("web", 2, 100, 200)])),
            cat(vec![
                vec![p("old-c", "web", "R1", S::Crashed)],
                many("old", "web", "R1", 1, S::Running),
                many("new", "web", "R2", 2, S::Starting),
            ]),
            "stop old-c",
        ),
        // 0/100 (singleton, agent): stop first, then start.
        case(
            "deploy 0/100 count 1: the old one stops first",
            deploying(r1(vec![bounded("web", 1, 0, 100)]), target("R2", vec![bounded("web", 1, 0, 100)])),
            many("old", "web", "R1", 1, S::Running),
            "stop old-0",
        ),
        case(
            "deploy 0/100 count 1: nothing starts while the old one stops",
            deploying(r1(vec![bounded("web", 1, 0, 100)]), target("R2", vec![bounded("web", 1, 0, 100)])),
            many("old", "web", "R1", 1, S::Stopping),
            "-",
        ),
        case(
            "deploy 0/100 count 1: the new one starts once the old is gone",
            deploying(r1(vec![bounded("web", 1, 0, 100)]), target("R2", vec![bounded("web", 1, 0, 100)])),
            vec![],
            "start web@R2 x1",
        ),
        case(
            "deploy 0/100 count 3: all old may go at once (minimum 0)",
            deploying(r1(vec![bounded("web", 3, 0, 100)]), target("R2", vec![bounded("web", 3, 0, 100)])),
            many("old", "web", "R1", 3, S::Running),
            "stop old-0 old-1 old-2",
        ),
        case(
            "deploy 100/100 count 2: one may be unavailable, or nothing could move",
            deploying(r1(vec![bounded("web", 2, 100, 100)]), target("R2", vec![bounded("web", 2, 100, 100)])),
            many("old", "web", "R1", 2, S::Running),
            "stop old-0",
        ),
        case(
            "deploy count 0: commits at once and stops the old",
            deploying(r1(vec![svc("web", 2)]), target("R2", vec![svc("web", 0)])),
            many("old", "web", "R1", 2, S::Running),
            "stop old-0 old-1; commit R2",
        ),
        case(
            "first deploy: starts and commits when ready",
            deploying(None, target("R1", vec![svc("web", 2)])),
            many("web", "web", "R1", 2, S::Running),
            "commit R1",
        ),
        case(
            "first deploy: starts",
            deploying(None, target("R1", vec![svc("web", 2), svc("worker", 1)])),
            vec![],
            "start web@R1 x2; start worker@R1 x1",
        ),
        case(
            "deploy does not commit until every service is ready",
            deploying(r1(vec![svc("web", 1), svc("worker", 1)]), target("R2", vec![svc("web", 1), svc("worker", 1)])),
            cat(vec![
                many("w", "web", "R2", 1, S::Running),
                many("k", "worker", "R2", 1, S::Starting),
                many("kold", "worker", "R1", 1, S::Running),
            ]),
            "-",
        ),
        case(
            "deploy keeps a service the new release drops until it commits",
            deploying(r1(vec![svc("web", 1), svc("worker", 1)]), target("R2", vec![svc("web", 1)])),
            cat(vec![many("k", "worker", "R1", 1, S::Running), many("w", "web", "R2", 1, S::Starting)]),
            "-",
        ),
        // Ending a deployment.
        case(
            "cancel rolls back at once",
            Desired {
                deploy: Some(Deploy {
                    cancel_requested: true,
                    ..deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])).deploy.unwrap()
                }),
                ..app(r1(vec![svc("web", 1)]))
            },
            cat(vec![many("old", "web", "R1", 1, S::Running), many("new", "web", "R2", 1, S::Starting)]),
            "rollback R2: the deployment was cancelled",
        ),
        case(
            "cancel before anything started",
            Desired {
                deploy: Some(Deploy {
                    cancel_requested: true,
                    ..deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])).deploy.unwrap()
                }),
                ..app(r1(vec![svc("web", 1)]))
            },
            vec![],
            "rollback R2: the deployment was cancelled",
        ),
        case(
            "cancel while waiting for resources",
            Desired {
                deploy: Some(Deploy {
                    cancel_requested: true,
                    target: Target {
                        links: Links::Waiting("resource db is not ready yet (provisioning)".into()),
                        ..target("R2", vec![svc("web", 1)])
                    },
                    started: t(0),
                    timeout: 600,
                }),
                ..app(r1(vec![svc("web", 1)]))
            },
            many("old", "web", "R1", 1, S::Running),
            "rollback R2: the deployment was cancelled",
        ),
        case(
            "cancel wins over a commit that would be due",
            Desired {
                deploy: Some(Deploy {
                    cancel_requested: true,
                    ..deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])).deploy.unwrap()
                }),
                ..app(r1(vec![svc("web", 1)]))
            },
            many("new", "web", "R2", 1, S::Running),
            "rollback R2: the deployment was cancelled",
        ),
        Case {
            now: t(601),
            ..case(
                "the deadline rolls back",
                deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])),
                many("new", "web", "R2", 1, S::Starting),
                "rollback R2: release R2 did not become healthy within 600s",
            )
        },
        Case {
            now: t(601),
            ..case(
                "the deadline while waiting names what it waited for",
                Desired {
                    deploy: Some(Deploy {
                        target: Target {
                            links: Links::Waiting("resource db is not ready yet (provisioning)".into()),
                            ..target("R2", vec![svc("web", 1)])
                        },
                        started: t(0),
                        timeout: 600,
                        cancel_requested: false,
                    }),
                    ..app(r1(vec![svc("web", 1)]))
                },
                vec![],
                "rollback R2: release R2 did not become healthy within 600s: resource db is not ready yet (provisioning)",
            )
        },
        case(
            "a crash loop of the new release rolls back",
            deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])),
            vec![
                p("old", "web", "R1", S::Running),
                Observed {
                    crashes: 3,
                    exit_code: Some(7),
                    ..p("web-bad", "web", "R2", S::Crashed)
                },
            ],
            "rollback R2: process web-bad of release R2 keeps crashing (exit code 7)",
        ),
        case(
            "two crashes are not a loop yet",
            deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])),
            vec![
                p("old", "web", "R1", S::Running),
                Observed {
                    crashes: 2,
                    ..p("web-bad", "web", "R2", S::Crashed)
                },
            ],
            "-",
        ),
        case(
            "a crash loop of the old release does not roll the new one back",
            deploying(r1(vec![svc("web", 1)]), target("R2", vec![svc("web", 1)])),
            vec![
                Observed { crashes: 5, ..p("old", "web", "R1", S::Crashed) },
                p("new", "web", "R2", S::Starting),
            ],
            "stop old",
        ),
        case(
            "a release that cannot run rolls back",
            deploying(
                r1(vec![svc("web", 1)]),
                Target {
                    services: Err("service web has no image".into()),
                    ..target("R2", vec![])
                },
            ),
            many("old", "web", "R1", 1, S::Running),
            "rollback R2: cannot run release R2: service web has no image",
        ),
        case(
            "a failed resource rolls back",
            deploying(
                r1(vec![svc("web", 1)]),
                Target {
                    links: Links::Failed("resource db failed: no plugin serves type mongo".into()),
                    ..target("R2", vec![svc("web", 1)])
                },
            ),
            many("old", "web", "R1", 1, S::Running),
            "rollback R2: cannot run release R2: resource db failed: no plugin serves type mongo",
        ),
        case(
            "waiting for resources: the active release keeps converging",
            Desired {
                deploy: Some(Deploy {
                    target: Target {
                        links: Links::Waiting("resource db is not ready yet (provisioning)".into()),
                        ..target("R2", vec![svc("web", 2)])
                    },
                    started: t(0),
                    timeout: 600,
                    cancel_requested: false,
                }),
                ..app(r1(vec![svc("web", 2)]))
            },
            many("old", "web", "R1", 1, S::Running),
            "start web@R1 x1; waiting: resource db is not ready yet (provisioning)",
        ),
        case(
            "waiting for resources on a first deploy: nothing runs, nothing is stopped",
            Desired {
                deploy: Some(Deploy {
                    target: Target {
                        links: Links::Waiting("resource db is not ready yet (pending)".into()),
                        ..target("R1", vec![svc("web", 2)])
                    },
                    started: t(0),
                    timeout: 600,
                    cancel_requested: false,
                }),
                ..app(None)
            },
            vec![],
            "waiting: resource db is not ready yet (pending)",
        ),
        // A newer release arriving mid-deploy (promote --force).
        case(
            "a newer release mid-deploy: the half-deployed one is old too (and makes room first)",
            deploying(r1(vec![svc("web", 2)]), target("R3", vec![svc("web", 2)])),
            cat(vec![many("old", "web", "R1", 2, S::Running), many("mid", "web", "R2", 2, S::Starting)]),
            "stop mid-0 mid-1",
        ),
        case(
            "a newer release mid-deploy: ready R2 processes count as old capacity",
            deploying(r1(vec![svc("web", 2)]), target("R3", vec![svc("web", 2)])),
            cat(vec![many("mid", "web", "R2", 2, S::Running), many("new", "web", "R3", 2, S::Running)]),
            "stop mid-0 mid-1; commit R3",
        ),
        // After a rollback: the active release takes over again.
        case(
            "after a rollback the new release's processes go",
            app(r1(vec![svc("web", 2)])),
            cat(vec![many("old", "web", "R1", 2, S::Running), many("bad", "web", "R2", 2, S::Crashed)]),
            "stop bad-0 bad-1",
        ),
        case(
            "after a rollback ready processes of the failed release go once the active has its count",
            app(r1(vec![svc("web", 2)])),
            cat(vec![many("old", "web", "R1", 1, S::Running), many("bad", "web", "R2", 2, S::Running)]),
            "start web@R1 x1; stop bad-0",
        ),
        // Agent restart mid-deploy: the same observed state gives the same plan.
        case(
            "agent restart mid-deploy: re-adopted processes resume the rollout",
            deploying(r1(vec![svc("web", 4)]), target("R2", vec![svc("web", 4)])),
            cat(vec![
                many("old", "web", "R1", 2, S::Running),
                many("new", "web", "R2", 2, S::Running),
                many("nw2", "web", "R2", 2, S::Pending),
            ]),
            "-",
        ),
        // Rolling restarts.
        case(
            "restart of one service replaces its processes started before the request",
            Desired {
                restarts: BTreeMap::from([("web".to_string(), t(5))]),
                ..app(r1(vec![svc("web", 2), svc("worker", 1)]))
            },
            cat(vec![many("web", "web", "R1", 2, S::Running), many("wk", "worker", "R1", 1, S::Running)]),
            "start web@R1 x2",
        ),
        case(
            "restart: processes started after the request are current",
            Desired {
                restarts: BTreeMap::from([("web".to_string(), t(5))]),
                ..app(r1(vec![svc("web", 2)]))
            },
            cat(vec![
                many("web", "web", "R1", 2, S::Running),
                vec![Observed { started: t(6), ..p("n-0", "web", "R1", S::Running) }],
                vec![Observed { started: t(7), ..p("n-1", "web", "R1", S::Starting) }],
            ]),
            "stop web-0",
        ),
        case(
            "restart of every service (*)",
            Desired {
                restarts: BTreeMap::from([("*".to_string(), t(5))]),
                ..app(r1(vec![svc("web", 1), svc("worker", 1)]))
            },
            cat(vec![many("web", "web", "R1", 1, S::Running), many("wk", "worker", "R1", 1, S::Running)]),
            "start web@R1 x1; start worker@R1 x1",
        ),
        // Agent services.
        case("an agent service runs one process per instance", app(r1(vec![agent("mon")])), vec![], "start mon@R1 x1"),
        case(
            "an agent service ignores a live count",
            Desired {
                scale: BTreeMap::from([("mon".into(), Scale { count: Some(5), ..Default::default() })]),
                ..app(r1(vec![agent("mon")]))
            },
            many("mon", "mon", "R1", 1, S::Running),
            "-",
        ),
        case(
            "an agent service deploys stop-then-start",
            deploying(r1(vec![agent("mon")]), target("R2", vec![agent("mon")])),
            many("mon", "mon", "R1", 1, S::Running),
            "stop mon-0",
        ),
    ];
    // An agent service on three instances.
    {
        let desired = app(Some(target("R1", vec![agent("mon")])));
        let observed = vec![Observed {
            instance: "b".into(),
            ..p("mon-b", "mon", "R1", S::Running)
        }];
        let instances: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let plan = plan(&desired, &observed, &instances, t(10));
        let mut on: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { instance, .. } => Some(instance.as_str()),
                _ => None,
            })
            .collect();
        on.sort();
        assert_eq!(on, ["a", "c"], "an agent service on 3 instances");
    }
    let total = cases.len();
    let mut failed = Vec::new();
    for c in cases.drain(..) {
        let got = summary(&plan(&c.desired, &c.observed, &local(), c.now));
        if got != c.want {
            failed.push(format!("{}\n   want: {}\n    got: {}", c.name, c.want, got));
        }
    }
    assert!(total >= 40, "only {total} cases");
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn bounds_round_like_kubernetes() {
    let cases = [
        // (n, min, max) -> (max_total, min_ready)
        ((10, 50, 200), (20, 5)),
        ((10, 100, 200), (20, 10)),
        ((10, 50, 150), (15, 5)),
        ((10, 0, 100), (10, 0)),
        ((1, 50, 200), (2, 1)),
        ((1, 0, 100), (1, 0)),
        ((3, 50, 200), (6, 2)),
        ((3, 50, 110), (4, 2)),
        ((2, 100, 100), (2, 1)),
        ((0, 50, 200), (0, 0)),
        ((5, 250, 50), (5, 4)),
    ];
    for ((n, min, max), (total, ready)) in cases {
        let b = bounds(n, min, max);
        assert_eq!(
            (b.max_total, b.min_ready),
            (total, ready),
            "n={n} {min}/{max}"
        );
    }
}

#[test]
fn progress_counts_updated_healthy_and_old() {
    let desired = deploying(
        Some(target("R1", vec![svc("web", 3)])),
        target("R2", vec![svc("web", 3)]),
    );
    let observed = cat(vec![
        many("old", "web", "R1", 2, S::Running),
        many("gone", "web", "R1", 1, S::Stopping),
        many("new", "web", "R2", 1, S::Running),
        many("nw2", "web", "R2", 2, S::Starting),
    ]);
    let plan = plan(&desired, &observed, &local(), t(10));
    assert_eq!(
        plan.progress,
        vec![ServiceProgress {
            service: "web".into(),
            release: "R2".into(),
            desired: 3,
            updated: 3,
            healthy: 1,
            old: 3,
        }]
    );
    assert_eq!(plan.wake_at, Some(t(600)));
}

/// A fake node: starts become `Starting`, then `Running` (ready) after `ready_after` steps;
/// stops become `Stopping`, then disappear after `stop_after` steps. Runs the planner to
/// completion and checks the deployment bounds after every step.
fn simulate(n: u32, minimum: u32, maximum: u32, ready_after: u32, stop_after: u32) -> usize {
    struct Sim {
        obs: Observed,
        age: u32,
    }
    let spec = |r: &str| target(r, vec![bounded("web", n, minimum, maximum)]);
    let mut sims: Vec<Sim> = many("old", "web", "R1", n as usize, S::Running)
        .into_iter()
        .map(|obs| Sim { obs, age: 0 })
        .collect();
    let mut desired = deploying(Some(spec("R1")), spec("R2"));
    let b = bounds(n as usize, minimum, maximum);
    let mut next = 0;
    for step in 0..500 {
        let observed: Vec<Observed> = sims.iter().map(|s| s.obs.clone()).collect();
        let ready = observed.iter().filter(|o| o.status == S::Running).count();
        assert!(
            observed.len() <= b.max_total,
            "step {step}: {} processes exist ({n} {minimum}/{maximum})",
            observed.len()
        );
        assert!(
            ready >= b.min_ready,
            "step {step}: {ready} ready ({n} {minimum}/{maximum})"
        );
        if maximum > 100 && minimum == 100 {
            assert!(ready >= n as usize, "step {step}: capacity fell to {ready}");
        }
        let plan = plan(&desired, &observed, &local(), t(10 + step));
        for a in &plan.actions {
            match a {
                Action::Start { release, .. } => {
                    next += 1;
                    sims.push(Sim {
                        obs: Observed {
                            started: t(100 + next),
                            ..p(&format!("new-{next}"), "web", release, S::Starting)
                        },
                        age: 0,
                    });
                }
                Action::Stop { process, .. } => {
                    let s = sims
                        .iter_mut()
                        .find(|s| &s.obs.id == process)
                        .expect("stop of a known process");
                    assert_ne!(s.obs.status, S::Stopping, "stopped twice: {process}");
                    s.obs.status = S::Stopping;
                    s.age = 0;
                }
                Action::Commit { release } => {
                    assert_eq!(release, "R2");
                    desired = app(Some(spec("R2")));
                }
                Action::RollBack { reason, .. } => panic!("rolled back: {reason}"),
            }
        }
        if desired.deploy.is_none()
            && plan.actions.is_empty()
            && sims
                .iter()
                .all(|s| s.obs.release == "R2" && s.obs.status == S::Running)
            && sims.len() == n as usize
        {
            return step as usize;
        }
        for s in &mut sims {
            s.age += 1;
            if s.obs.status == S::Starting && s.age >= ready_after {
                s.obs.status = S::Running;
            }
        }
        sims.retain(|s| !(s.obs.status == S::Stopping && s.age >= stop_after));
    }
    panic!("the deploy of {n} {minimum}/{maximum} never finished");
}

#[test]
fn simulated_rolling_deploys_respect_the_bounds_and_finish() {
    for n in [0, 1, 2, 3, 5, 10, 20] {
        for (min, max) in [
            (50, 200),
            (100, 200),
            (50, 150),
            (0, 100),
            (100, 100),
            (0, 200),
            (75, 125),
        ] {
            for (ready_after, stop_after) in [(1, 1), (3, 1), (1, 3), (4, 4)] {
                simulate(n, min, max, ready_after, stop_after);
            }
        }
    }
}

#[test]
fn a_pass_for_1000_services_of_10_processes_is_fast() {
    // Correctness of a big pass (the speed is measured by the planner bench, not here).
    let services: Vec<ServiceSpec> = (0..1000).map(|i| svc(&format!("s{i}"), 10)).collect();
    let desired = deploying(Some(target("R1", services.clone())), target("R2", services));
    let observed: Vec<Observed> = (0..1000)
        .flat_map(|i| many(&format!("s{i}"), &format!("s{i}"), "R1", 10, S::Running))
        .collect();
    let plan = plan(&desired, &observed, &local(), t(10));
    assert_eq!(plan.starts().count(), 10_000);
    assert_eq!(plan.stops().count(), 0);
}
