//! Valid manifests: every key, every shorthand, every default that depends on which keys are
//! written, interpolation, env merge, anchors and merges, order, and the edge cases of reference §3.9.

mod common;
use common::*;
use dray_manifest::*;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// A table: manifests that must load, with a check each.

struct Case {
    name: &'static str,
    yaml: &'static str,
    env: &'static [(&'static str, &'static str)],
    check: fn(&Manifest, &[String]),
}

fn svc<'a>(m: &'a Manifest, name: &str) -> &'a Service {
    m.service(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

const CASES: &[Case] = &[
    // --- reference 3.9: edge cases seen in the wild ---
    Case {
        name: "3.9 six-field cron with ? (convox/console-app)",
        yaml: "services:\n  web:\n    image: x\ntimers:\n  cleanup:\n    schedule: \"0 10 * * ? *\"\n    command: bin/cleanup\n    service: web\n",
        env: &[],
        check: |m, w| {
            assert_eq!(m.timers["cleanup"].schedule, "0 10 * * *");
            assert!(m.timers["cleanup"].cron().unwrap().matches(0, 10, 1, 1, 3));
            assert!(w.is_empty(), "{w:?}");
        },
    },
    Case {
        name: "3.9 environment ['*', FORCE_SECURE_CONNECTION=true] (CapXTech/peatio)",
        yaml: "services:\n  web:\n    image: x\n    environment: ['*', FORCE_SECURE_CONNECTION=true]\n",
        env: &[("A", "1"), ("B", "2")],
        check: |m, _| {
            let e = m.service_env("web", &env(&[("A", "1"), ("B", "2")])).unwrap();
            assert_eq!(
                e.into_iter().collect::<Vec<_>>(),
                vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "2".into()),
                    ("FORCE_SECURE_CONNECTION".into(), "true".into())
                ]
            );
        },
    },
    Case {
        name: "3.9 scale: 2 integer shorthand",
        yaml: "services:\n  web:\n    image: x\n    scale: 2\n",
        env: &[],
        check: |m, _| {
            assert_eq!(svc(m, "web").count_range(), (2, 2));
            assert_eq!(svc(m, "web").scale.cpu, 250);
            assert_eq!(svc(m, "web").scale.memory, 512);
        },
    },
    Case {
        name: "3.9 port: https:3000",
        yaml: "services:\n  web:\n    build: .\n    port: https:3000\n",
        env: &[],
        check: |m, _| {
            let p = svc(m, "web").port.clone().unwrap();
            assert_eq!((p.port, p.scheme.as_str()), (3000, "https"));
        },
    },
    Case {
        name: "3.9 volumes: [] and timers: {} (DocSpring/rack-gateway)",
        yaml: "services:\n  web:\n    image: x\n    volumes: []\ntimers: {}\n",
        env: &[],
        check: |m, w| {
            assert!(svc(m, "web").volumes.is_empty());
            assert!(m.timers.is_empty());
            assert!(w.is_empty(), "{w:?}");
        },
    },
    Case {
        name: "3.9 ${VAR} in non-string scalars, unset: null, so defaults",
        yaml: "appSettings:\n  awsLogs:\n    cwRetention: ${LOG_RETENTION_DAYS}\nservices:\n  web:\n    image: x\n    internal: ${INTERNAL}\n",
        env: &[],
        check: |m, w| {
            assert!(!svc(m, "web").internal);
            assert_eq!(m.app_settings.clone().unwrap().aws_logs.unwrap().cw_retention, None);
            assert_eq!(
                w,
                &[
                    "3:18: ${LOG_RETENTION_DAYS} is not set, so it is replaced by an empty string",
                    "7:15: ${INTERNAL} is not set, so it is replaced by an empty string"
                ]
            );
        },
    },
    Case {
        name: "3.9 ${VAR} in non-string scalars, set: typed",
        yaml: "appSettings:\n  awsLogs:\n    cwRetention: ${LOG_RETENTION_DAYS}\nservices:\n  web:\n    image: x\n    internal: ${INTERNAL}\n",
        env: &[("LOG_RETENTION_DAYS", "14"), ("INTERNAL", "yes")],
        check: |m, _| {
            assert!(svc(m, "web").internal);
            assert_eq!(m.app_settings.clone().unwrap().aws_logs.unwrap().cw_retention, Some(14));
        },
    },
    Case {
        name: "3.9 type: efs (v2-only) loads with a warning (convox-examples/efs-volumes)",
        yaml: "resources:\n  shared:\n    type: efs\nservices:\n  web:\n    image: x\n",
        env: &[],
        check: |m, w| {
            assert_eq!(m.resources["shared"].kind, "efs");
            assert_eq!(w, &["3:5: resource shared has type efs, a Convox v2 (AWS) type that Dray does not provide"]);
        },
    },
    Case {
        name: "3.9 postgres with RDS option class (convox-examples/n8n)",
        yaml: "resources:\n  db:\n    type: postgres\n    options:\n      class: db.t3.small\nservices:\n  web:\n    image: x\n    resources: [db]\n",
        env: &[],
        check: |m, w| {
            assert_eq!(m.resources["db"].options["class"], "db.t3.small");
            assert_eq!(w, &["5:7: resource db: option `class` is an RDS option; the containerized postgres ignores it"]);
        },
    },
    // --- shorthands ---
    Case {
        name: "build shorthand and forms",
        yaml: "services:\n  a:\n    build: ./api\n  b:\n    build:\n      manifest: Dockerfile.prod\n      args: [FOO=1]\n  c:\n    image: redis\n  d: {}\n  e:\n",
        env: &[],
        check: |m, _| {
            let b = |n| svc(m, n).build.clone();
            assert_eq!(b("a").unwrap(), Build { path: "./api".into(), manifest: "Dockerfile".into(), args: vec![] });
            assert_eq!(b("b").unwrap(), Build { path: ".".into(), manifest: "Dockerfile.prod".into(), args: vec!["FOO=1".into()] });
            assert_eq!(b("c"), None);
            assert_eq!(b("d").unwrap().path, ".");
            assert_eq!(b("e").unwrap().manifest, "Dockerfile");
        },
    },
    Case {
        name: "port forms",
        yaml: "services:\n  a: {image: x, port: 3000}\n  b: {image: x, port: \"4000\"}\n  c: {image: x, port: grpc:50051}\n  d: {image: x, port: {port: 443, scheme: https}}\n  e: {image: x, port: {port: \"https:8443\"}}\n  f: {image: x}\n",
        env: &[],
        check: |m, _| {
            let p = |n| svc(m, n).port.clone().map(|p| (p.port, p.scheme));
            assert_eq!(p("a"), Some((3000, "http".into())));
            assert_eq!(p("b"), Some((4000, "http".into())));
            assert_eq!(p("c"), Some((50051, "GRPC".into())));
            assert_eq!(p("d"), Some((443, "https".into())));
            assert_eq!(p("e"), Some((8443, "https".into())));
            assert_eq!(p("f"), None);
            assert!(svc(m, "a").is_routable());
        },
    },
    Case {
        name: "ports forms; the main port over tcp is not an extra port",
        yaml: "services:\n  web:\n    image: x\n    port: 3000\n    ports: [3000, 5000, \"5001/udp\", \"5002\", 3000/udp]\n",
        env: &[],
        check: |m, _| {
            let s = svc(m, "web");
            let ports: Vec<String> = s.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol)).collect();
            assert_eq!(ports, ["3000/tcp", "5000/tcp", "5001/udp", "5002/tcp", "3000/udp"]);
            let extra: Vec<u16> = s.extra_ports().iter().map(|p| p.port).collect();
            assert_eq!(extra, [5000, 5001, 5002, 3000]);
        },
    },
    Case {
        name: "domain forms",
        yaml: "services:\n  a: {image: x, domain: a.example.org}\n  b: {image: x, domain: \"b.example.org, c.example.org,,\"}\n  c: {image: x, domain: [\" d.example.org \", \"*.example.org\"]}\n  d: {image: x, domain: \"\"}\n",
        env: &[],
        check: |m, _| {
            assert_eq!(svc(m, "a").domains(), ["a.example.org"]);
            assert_eq!(svc(m, "b").domains(), ["b.example.org", "c.example.org"]);
            assert_eq!(svc(m, "c").domains(), ["d.example.org", "*.example.org"]);
            assert_eq!(svc(m, "c").domain(), Some("d.example.org"));
            assert!(svc(m, "d").domains().is_empty());
        },
    },
    Case {
        name: "health forms and defaults",
        yaml: "services:\n  a: {image: x, health: /auth}\n  b: {image: x, health: {interval: 10}}\n  c: {image: x, health: {grace: 2, timeout: 3}}\n  d: {image: x, health: {disable: true, port: 9000}}\n  e: {image: x, health: {grace: 0, interval: 1}}\n",
        env: &[],
        check: |m, _| {
            let h = |n| svc(m, n).health.clone();
            assert_eq!((h("a").path.as_str(), h("a").grace, h("a").interval, h("a").timeout), ("/auth", 5, 5, 4));
            assert_eq!((h("b").path.as_str(), h("b").grace, h("b").interval, h("b").timeout), ("/", 10, 10, 9));
            assert_eq!((h("c").grace, h("c").interval, h("c").timeout), (2, 5, 3));
            assert!(h("d").disable);
            assert_eq!(h("d").port.unwrap().port, 9000);
            assert_eq!((h("e").grace, h("e").interval, h("e").timeout), (1, 1, 0));
        },
    },
    Case {
        name: "liveness and startupProbe defaults",
        yaml: "services:\n  a:\n    image: x\n    liveness: {path: \" /live \"}\n    startupProbe: {path: /start, grace: 60}\n  b:\n    image: x\n    liveness: {grace: 3}\n  c:\n    image: x\n    port: 8000\n    scale: {gpu: 1}\n",
        env: &[],
        check: |m, w| {
            let l = svc(m, "a").liveness.clone().unwrap();
            assert_eq!((l.path.as_str(), l.grace, l.interval, l.timeout, l.success_threshold, l.failure_threshold), ("/live", 10, 5, 5, 1, 3));
            let sp = svc(m, "a").startup_probe.clone().unwrap();
            assert_eq!((sp.grace, sp.interval, sp.failure_threshold), (Some(60), Some(5), Some(3)));
            assert_eq!(svc(m, "b").liveness, None);
            assert_eq!(w, &["8:15: services.b.liveness: no `path`, so the liveness check is off"]);
            let gpu = svc(m, "c");
            assert_eq!(gpu.scale.gpu.clone().unwrap(), Gpu { count: 1, vendor: "nvidia".into() });
            assert_eq!((gpu.scale.cpu, gpu.scale.memory), (0, 0));
            let sp = gpu.startup_probe.clone().unwrap();
            assert_eq!((sp.tcp_socket_port.as_deref(), sp.grace, sp.interval, sp.failure_threshold), (Some("8000"), Some(300), Some(10), Some(180)));
        },
    },
    Case {
        name: "scale forms",
        yaml: "services:\n  a: {image: x, scale: \"1-3\"}\n  b: {image: x, scale: {count: 2-4}}\n  c: {image: x, scale: {count: {min: 1, max: \"6\"}}}\n  d: {image: x, scale: 0}\n  e: {image: x, scale: {count: 0, cpu: 100}}\n  f: {image: x, scale: \"5\"}\n",
        env: &[],
        check: |m, _| {
            let c = |n| svc(m, n).count_range();
            assert_eq!(c("a"), (1, 3));
            assert_eq!(c("b"), (2, 4));
            assert_eq!(c("c"), (1, 6));
            assert_eq!(c("d"), (0, 0));
            assert_eq!(c("e"), (0, 0));
            assert_eq!(c("f"), (5, 5));
            assert_eq!(svc(m, "e").scale.cpu, 100);
        },
    },
    // --- defaults that depend on which keys are written ---
    Case {
        name: "no scale key: count 1; scale keys without count: count 1; empty scale: 0",
        yaml: "services:\n  a: {image: x}\n  b: {image: x, scale: {memory: 1024}}\n  c:\n    image: x\n    scale:\n  d: {image: x, scale: {}}\n",
        env: &[],
        check: |m, w| {
            assert_eq!(svc(m, "a").count_range(), (1, 1));
            assert_eq!(svc(m, "b").count_range(), (1, 1));
            assert_eq!(svc(m, "b").scale.memory, 1024);
            assert_eq!(svc(m, "c").count_range(), (0, 0));
            assert_eq!(svc(m, "d").count_range(), (0, 0));
            assert_eq!(w, &[
                "6:5: services.c.scale: an empty `scale` gives a count of 0 (as in Convox)",
                "7:17: services.d.scale: an empty `scale` gives a count of 0 (as in Convox)",
            ]);
        },
    },
    Case {
        name: "scale.min / scale.max",
        yaml: "services:\n  a: {image: x, scale: {min: 2}}\n  b: {image: x, scale: {max: 4}}\n  c: {image: x, scale: {min: 2, max: 5}}\n  d: {image: x, scale: {min: 2, autoscale: {queueDepth: {threshold: 10}}}}\n  e: {image: x, scale: {max: 6, autoscale: {cpu: {threshold: 70}}}}\n",
        env: &[],
        check: |m, _| {
            let c = |n| svc(m, n).count_range();
            assert_eq!(c("a"), (2, 2));
            assert_eq!(c("b"), (4, 4));
            assert_eq!(c("c"), (2, 5));
            assert_eq!(c("d"), (2, 10));
            assert_eq!(c("e"), (1, 6));
            assert!(svc(m, "e").scale.autoscales());
            assert!(!svc(m, "a").scale.autoscales());
        },
    },
    Case {
        name: "cpu and memory default to the limits, then 250/512",
        yaml: "services:\n  a: {image: x, scale: {limit: {cpu: 1000, memory: 2048}}}\n  b: {image: x, scale: {cpu: 100, limit: {cpu: 1000}}}\n",
        env: &[],
        check: |m, _| {
            assert_eq!((svc(m, "a").scale.cpu, svc(m, "a").scale.memory), (1000, 2048));
            assert_eq!((svc(m, "b").scale.cpu, svc(m, "b").scale.memory), (100, 512));
        },
    },
    Case {
        name: "deployment defaults: 50/200, agent and singleton 0/100, written keys kept",
        yaml: "services:\n  a: {image: x}\n  b: {image: x, singleton: true}\n  c: {image: x, agent: true}\n  d: {image: x, agent: true, deployment: {minimum: 25}}\n  e: {image: x, deployment: {maximum: 150}}\n  f: {image: x, deployment: {minimum: 0}}\n",
        env: &[],
        check: |m, _| {
            let d = |n| (svc(m, n).deployment.minimum, svc(m, n).deployment.maximum);
            assert_eq!(d("a"), (50, 200));
            assert_eq!(d("b"), (0, 100));
            assert_eq!(d("c"), (0, 100));
            assert_eq!(d("d"), (25, 100));
            assert_eq!(d("e"), (50, 150));
            assert_eq!(d("f"), (0, 200));
            assert_eq!(m.agents(), ["c", "d"]);
        },
    },
    Case {
        name: "init, termination.grace and tls.redirect default unless written",
        yaml: "services:\n  a: {image: x}\n  b: {image: x, init: false, termination: {grace: 0}, tls: {redirect: false}}\n  c:\n    image: x\n    init:\n    termination: {grace: 90}\n",
        env: &[],
        check: |m, _| {
            let a = svc(m, "a");
            assert!(a.init && a.tls.redirect);
            assert_eq!(a.termination.grace, 30);
            let b = svc(m, "b");
            assert!(!b.init && !b.tls.redirect);
            assert_eq!(b.termination.grace, 0);
            let c = svc(m, "c");
            assert!(!c.init, "`init:` written empty is false, as in Convox");
            assert_eq!(c.termination.grace, 90);
        },
    },
    Case {
        name: "timeout 0 is 60; booleans; YAML 1.1 yes/on/off",
        yaml: "services:\n  web:\n    image: x\n    timeout: 0\n    sticky: on\n    internal: yes\n    privileged: off\n    singleton: y\n    grpcHealthEnabled: True\n    internalRouter: NO\n",
        env: &[],
        check: |m, _| {
            let s = svc(m, "web");
            assert_eq!(s.timeout, 60);
            assert!(s.sticky && s.internal && !s.privileged && s.singleton && s.grpc_health_enabled && !s.internal_router);
            assert!(!s.is_routable());
        },
    },
    Case {
        name: "quoted scalars stay strings",
        yaml: "resources:\n  db:\n    type: postgres\n    options: {version: \"16\", durable: yes, storage: 20, ssl: 'on'}\nservices:\n  web:\n    image: x\n    environment: [\"yes\", \"8080\"]\n",
        env: &[("yes", "1"), ("8080", "2")],
        check: |m, _| {
            let o = &m.resources["db"].options;
            assert_eq!((o["version"].as_str(), o["durable"].as_str(), o["storage"].as_str(), o["ssl"].as_str()), ("16", "yes", "20", "on"));
            assert_eq!(svc(m, "web").environment, ["yes", "8080"]);
        },
    },
    Case {
        name: "command shell split",
        yaml: "services:\n  web:\n    image: x\n    command: bin/web --name \"a b\" --flag='c d' e\\ f\n  job:\n    image: x\n",
        env: &[],
        check: |m, _| {
            assert_eq!(svc(m, "web").command_args().unwrap(), ["bin/web", "--name", "a b", "--flag=c d", "e f"]);
            assert_eq!(svc(m, "job").command_args(), None);
        },
    },
    Case {
        name: "resource links",
        yaml: "resources:\n  main-db: {type: postgres}\n  cache: {type: redis}\nservices:\n  web:\n    image: x\n    resources: [main-db, \"cache:SESSION_URL\", \"main-db:READER_HOST\", \"cache: CACHE\"]\n",
        env: &[],
        check: |m, _| {
            let links: Vec<(String, String, String)> = svc(m, "web").resource_links().into_iter().map(|l| (l.resource, l.env, l.key)).collect();
            let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
            assert_eq!(links, vec![
                t("main-db", "MAIN_DB_URL", "URL"), t("main-db", "MAIN_DB_USER", "USER"), t("main-db", "MAIN_DB_PASS", "PASS"),
                t("main-db", "MAIN_DB_HOST", "HOST"), t("main-db", "MAIN_DB_PORT", "PORT"), t("main-db", "MAIN_DB_NAME", "NAME"),
                t("cache", "SESSION_URL", "URL"), t("main-db", "READER_HOST", "HOST"), t("cache", "CACHE", "URL"),
            ]);
            assert_eq!(m.resources["main-db"].env_prefix(), "MAIN_DB");
        },
    },
    Case {
        name: "annotations: k=v strings and maps",
        yaml: "services:\n  web:\n    image: x\n    annotations:\n      - a.io/x=1=2\n      - b.io/y: \"two\"\n    ingressAnnotations: [nginx.ingress.kubernetes.io/proxy-body-size=50m]\n",
        env: &[],
        check: |m, _| {
            let a = &svc(m, "web").annotations;
            assert_eq!((a["a.io/x"].as_str(), a["b.io/y"].as_str()), ("1=2", "two"));
            assert_eq!(svc(m, "web").ingress_annotations["nginx.ingress.kubernetes.io/proxy-body-size"], "50m");
        },
    },
    Case {
        name: "labels: top-level copied unless the service sets the key",
        yaml: "labels:\n  team: platform\n  tier: shared\nservices:\n  a: {image: x}\n  b: {image: x, labels: {tier: web, owner: me}}\n",
        env: &[],
        check: |m, _| {
            let l = |n| svc(m, n).labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
            assert_eq!(l("a"), ["team=platform", "tier=shared"]);
            assert_eq!(l("b"), ["tier=web", "owner=me", "team=platform"]);
        },
    },
    Case {
        name: "timers",
        yaml: "services:\n  worker: {image: x, scale: 0}\ntimers:\n  a: {schedule: \"*/5 * * * *\", command: bin/a, service: worker, concurrency: forbid, parallelCount: 3, annotations: [k=v]}\n  b: {schedule: \"@daily\", command: \"bin/b --x 'y z'\", service: worker, concurrency: REPLACE}\n  c: {schedule: \"0 9 * * MON-FRI\", command: bin/c, service: worker}\n",
        env: &[],
        check: |m, _| {
            let a = &m.timers["a"];
            assert_eq!((a.concurrency, a.parallel_count), (Concurrency::Forbid, Some(3)));
            assert_eq!(a.cron().unwrap().minutes(), [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]);
            assert_eq!(a.annotations["k"], "v");
            assert_eq!(m.timers["b"].concurrency, Concurrency::Replace);
            assert_eq!(m.timers["b"].command_args().unwrap(), ["bin/b", "--x", "y z"]);
            assert_eq!(m.timers["c"].concurrency, Concurrency::Allow);
            assert_eq!(m.timers["c"].cron().unwrap().days_of_week(), [1, 2, 3, 4, 5]);
        },
    },
    Case {
        name: "balancers",
        yaml: "services:\n  web: {image: x, ports: [3001, 3002/udp]}\nbalancers:\n  tcp:\n    service: web\n    whitelist: 10.0.0.0/8\n    ports:\n      5000: 3001\n      80: {port: 3001}\n  udp:\n    service: web\n    whitelist: [\"10.0.0.0/8\", \"fd00::/8\"]\n    annotations: [\"a=b\"]\n    ports:\n      5002: {port: 3002, protocol: udp}\n",
        env: &[],
        check: |m, w| {
            let t = &m.balancers["tcp"];
            assert_eq!(t.ports.keys().copied().collect::<Vec<_>>(), [5000, 80]);
            assert_eq!(t.ports[&80], BalancerPort { port: 3001, protocol: Protocol::Tcp });
            assert_eq!(t.whitelist, ["10.0.0.0/8"]);
            let u = &m.balancers["udp"];
            assert_eq!(u.ports[&5002].protocol, Protocol::Udp);
            assert_eq!(u.whitelist.len(), 2);
            assert!(w.is_empty(), "{w:?}");
        },
    },
    Case {
        name: "params, configs, appSettings",
        yaml: "params:\n  Foo: bar\n  Count: 3\nconfigs:\n  - id: app\n    name: app-config\n    value: hello\nappSettings:\n  awsLogs: {cwRetention: 7, disableRetention: true}\nservices:\n  web:\n    image: x\n    configMounts: [{id: app, dir: /etc/app, filename: app.conf}]\n",
        env: &[],
        check: |m, _| {
            assert_eq!(m.params["Count"], "3");
            assert_eq!(m.configs[0], Config { id: "app".into(), name: Some("app-config".into()), value: Some("hello".into()) });
            assert_eq!(m.app_settings.clone().unwrap().aws_logs.unwrap(), AwsLogs { cw_retention: Some(7), disable_retention: Some(true) });
            assert_eq!(svc(m, "web").config_mounts[0].filename, "app.conf");
        },
    },
    Case {
        name: "empty file",
        yaml: "# nothing yet\n",
        env: &[],
        check: |m, w| {
            assert!(m.services.is_empty());
            assert_eq!(w, &["1:1: the manifest has no services"]);
            assert_eq!(m.to_yaml(), "{}\n");
        },
    },
];

#[test]
fn valid_manifests_load_and_normalize() {
    for case in CASES {
        let l = load_with(
            "convox.yml",
            case.yaml,
            &env(case.env),
            &LoadOptions { require_env: true },
        )
        .unwrap_or_else(|e| panic!("case {:?} failed:\n{e}", case.name));
        let w = short(&l.warnings);
        (case.check)(&l.manifest, &w);
        // The normalized output loads back to the same manifest, with no new errors.
        let again = load_with(
            "normalized.yml",
            &l.manifest.to_yaml(),
            &env(case.env),
            &LoadOptions { require_env: true },
        )
        .unwrap_or_else(|e| {
            panic!(
                "case {:?}: normalized output does not load:\n{e}\n{}",
                case.name,
                l.manifest.to_yaml()
            )
        });
        assert_eq!(
            again.manifest.to_yaml(),
            l.manifest.to_yaml(),
            "case {:?}: normalizing twice changes the output",
            case.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Interpolation

#[test]
fn interpolation_semantics() {
    let text = "services:\n  web:\n    image: ${IMAGE}\n    domain: ${HOST}\n    command: echo $HOME ${X:-d} ${UNSET}end $oauthtoken\n";
    let l = ok_env(
        text,
        &[
            ("IMAGE", "nginx"),
            ("HOST", "a.example.org,b.example.org"),
            ("X:-d", "odd"),
        ],
    );
    let s = svc(&l.manifest, "web");
    assert_eq!(s.image.as_deref(), Some("nginx"));
    assert_eq!(s.domains(), ["a.example.org", "b.example.org"]);
    assert_eq!(s.command.as_deref(), Some("echo $HOME odd end $oauthtoken"));
    assert_eq!(
        short(&l.warnings),
        ["5:33: ${UNSET} is not set, so it is replaced by an empty string"]
    );
    assert_eq!(interpolate("${A}${B}", &env(&[("A", "1")])), "1");
    // `${X:-d}` is one name; the warning says so.
    let w = warnings("services:\n  web:\n    image: ${IMG:-nginx}\n");
    assert!(w[0].starts_with("3:12: ${IMG:-nginx} is not set"), "{w:?}");
    let l = load_with(
        "convox.yml",
        "services:\n  web:\n    image: ${IMG:-nginx}\n",
        &BTreeMap::new(),
        &LoadOptions { require_env: false },
    )
    .unwrap();
    assert!(l.warnings[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("no `${VAR:-default}` syntax"));
}

#[test]
fn interpolation_changes_structure_textually() {
    // A value with YAML in it becomes YAML, as in Convox.
    let l = ok_env(
        "services:\n  web:\n    image: x\n    ports: ${PORTS}\n",
        &[("PORTS", "[5000, 5001/udp]")],
    );
    assert_eq!(svc(&l.manifest, "web").ports.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Environment

#[test]
fn env_merge_and_required() {
    let text = "environment:\n  - GLOBAL=g\n  - SHARED\nservices:\n  api:\n    image: x\n    environment:\n      - DEFAULT=test\n      - GLOBAL=overridden\n      - SECRET\n      - OPTIONAL=\n  worker:\n    image: x\n";
    let release = env(&[("SHARED", "s"), ("SECRET", "shh"), ("UNDECLARED", "u")]);
    let l = load("convox.yml", text, &release).unwrap();
    let m = &l.manifest;
    assert_eq!(
        svc(m, "api").environment,
        [
            "GLOBAL=g",
            "SHARED",
            "DEFAULT=test",
            "GLOBAL=overridden",
            "SECRET",
            "OPTIONAL="
        ]
    );
    let api = m.service_env("api", &release).unwrap();
    assert_eq!(
        api,
        env(&[
            ("DEFAULT", "test"),
            ("GLOBAL", "overridden"),
            ("OPTIONAL", ""),
            ("SECRET", "shh"),
            ("SHARED", "s")
        ])
    );
    // The release env overrides defaults.
    let api = m
        .service_env(
            "api",
            &env(&[("SHARED", "s"), ("SECRET", "x"), ("DEFAULT", "prod")]),
        )
        .unwrap();
    assert_eq!(api["DEFAULT"], "prod");
    // Required keys, sorted.
    assert_eq!(m.required_env("api"), ["SECRET", "SHARED"]);
    let e = m.service_env("api", &BTreeMap::new()).unwrap_err();
    assert_eq!(e.to_string(), "required env: SECRET, SHARED");
    assert_eq!(e.service, "api");
    let e = m.service_env("worker", &BTreeMap::new()).unwrap_err();
    assert_eq!(e.to_string(), "required env: SHARED");
    // v3 runtime: defaults, then every release variable.
    let rt = m.runtime_env("worker", &release).unwrap();
    assert_eq!(
        rt,
        env(&[
            ("GLOBAL", "g"),
            ("SECRET", "shh"),
            ("SHARED", "s"),
            ("UNDECLARED", "u")
        ])
    );
    assert_eq!(
        svc(m, "api").environment_keys(),
        ["DEFAULT", "GLOBAL", "OPTIONAL", "SECRET", "SHARED"]
    );
}

#[test]
fn required_env_is_an_error_or_a_warning() {
    let text = "services:\n  web:\n    image: x\n    environment: [REQUIRED, DEFAULT=true]\n";
    let e = errs(text);
    assert_eq!(e.messages(), ["required env: REQUIRED"]);
    let w = warnings(text);
    assert_eq!(w, ["4:19: required env: REQUIRED"]);
    assert!(load("convox.yml", text, &env(&[("REQUIRED", "x")])).is_ok());
}

#[test]
fn env_lists_flatten_and_drop_non_strings() {
    let l = ok("services:\n  web:\n    image: x\n    environment:\n      - A=1\n      - [B=2, C=3]\n      - 8080\n      - {D: 4}\n");
    assert_eq!(svc(&l.manifest, "web").environment, ["A=1", "B=2", "C=3"]);
    assert_eq!(
        short(&l.warnings),
        [
            "7:9: services.web.environment[2]: the number `8080` is not a KEY or KEY=default declaration, ignored",
            "8:9: services.web.environment[3]: a map is not a KEY or KEY=default declaration, ignored",
        ]
    );
    assert_eq!(l.warnings[1].hint.as_deref(), Some("write `- D=4`"));
}

// ---------------------------------------------------------------------------------------------
// Anchors, merges, order, duplicates

#[test]
fn anchors_and_merge_keys() {
    let text = r#"
x-common: &common
  image: base
  scale: {cpu: 512}
  environment: [A=1]
x-extra: &extra
  image: other
  timeout: 120
services:
  quoted:
    "<<": *common
    command: quoted
  plain:
    <<: *common
    image: mine
  list:
    <<: [*extra, *common]
  aliased-value:
    image: x
    environment: *env
    scale: &s {count: 3}
  reuse:
    image: x
    scale: *s
"#
    .replace("environment: *env", "environment: &env [B=2]");
    let l = ok(&text);
    let m = &l.manifest;
    let q = svc(m, "quoted");
    assert_eq!(
        (q.image.as_deref(), q.command.as_deref(), q.scale.cpu),
        (Some("base"), Some("quoted"), 512)
    );
    assert_eq!(q.environment, ["A=1"]);
    assert_eq!(svc(m, "plain").image.as_deref(), Some("mine"));
    let list = svc(m, "list");
    assert_eq!(
        (list.image.as_deref(), list.timeout, list.scale.cpu),
        (Some("other"), 120, 512)
    );
    assert_eq!(svc(m, "reuse").count_range(), (3, 3));
    // Unknown top-level keys used as anchor holders are kept and warned about.
    assert_eq!(
        short(&l.warnings)[0],
        "2:1: convox.yml: unknown key `x-common`, ignored"
    );
}

#[test]
fn declaration_order_is_kept() {
    let m = manifest("resources:\n  zeta: {type: redis}\n  alpha: {type: postgres}\nservices:\n  zulu: {image: x, ports: [1, 2]}\n  alpha: {image: x}\n  mike: {image: x}\ntimers:\n  t2: {schedule: \"@hourly\", command: x, service: zulu}\n  t1: {schedule: \"@hourly\", command: x, service: zulu}\nbalancers:\n  b2:\n    service: zulu\n    ports: {5001: 1, 80: 2, 443: 1}\n  b1: {service: zulu, ports: {1: 1}}\n");
    assert_eq!(
        m.services.keys().collect::<Vec<_>>(),
        ["zulu", "alpha", "mike"]
    );
    assert_eq!(m.resources.keys().collect::<Vec<_>>(), ["zeta", "alpha"]);
    assert_eq!(m.timers.keys().collect::<Vec<_>>(), ["t2", "t1"]);
    assert_eq!(m.balancers.keys().collect::<Vec<_>>(), ["b2", "b1"]);
    assert_eq!(
        m.balancers["b2"].ports.keys().copied().collect::<Vec<_>>(),
        [5001, 80, 443]
    );
    let yaml = m.to_yaml();
    let services = &yaml[yaml.find("services:").unwrap()..];
    let order: Vec<usize> = ["zulu:", "alpha:", "mike:"]
        .iter()
        .map(|k| services.find(&format!("  {k}\n")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{yaml}");
}

#[test]
fn duplicate_keys_warn_and_the_last_wins() {
    let l = ok("services:\n  web:\n    image: x\n    port: 3000\n    port: 4000\n");
    assert_eq!(svc(&l.manifest, "web").main_port(), Some(4000));
    assert_eq!(
        short(&l.warnings),
        ["5:5: services.web: duplicate key `port` (first written at line 4); the last one is used"]
    );
}

// ---------------------------------------------------------------------------------------------
// Warnings: unknown, v2-only, deprecated and cloud-only keys

#[test]
fn unknown_keys_warn_with_suggestions_and_are_kept() {
    let text = "version: \"3\"\nservices:\n  web:\n    image: x\n    enviroment: [A]\n    domains: a.example.org\n    env: [B]\n    links: [db]\n    tags: {a: b}\n    drain: 60\n    scale: {count: 1, cooldown: {down: 60, up: 60}}\n    health: {path: /, intervl: 3}\n    frobnicate: true\nservics: {}\ntimers:\n  t: {schedule: \"@daily\", command: x, service: web, policies: [p]}\n";
    let l = ok(text);
    let w: Vec<(String, Option<String>)> = l
        .warnings
        .iter()
        .map(|d| {
            (
                format!("{}:{}: {}", d.line, d.column, d.message),
                d.hint.clone(),
            )
        })
        .collect();
    let expect = [
        ("1:1: `version` is a docker-compose key; convox.yml has no version, so it is ignored", "remove the `version:` line (a Gen1 docker-compose.yml is not a convox.yml)"),
        ("5:5: services.web: unknown key `enviroment`, ignored", "did you mean `environment`?"),
        ("6:5: services.web: unknown key `domains`, ignored", "did you mean `domain`?"),
        ("7:5: services.web: unknown key `env`, ignored", "did you mean `environment`?"),
        ("8:5: services.web.links: `links` is a Convox v2 (rack) key; Dray ignores it", "link services through env vars you set yourself, or use service discovery (`http://<service>.<app>.convox.local:<port>`)"),
        ("9:5: services.web.tags: `tags` is a Convox v2 (rack) key; Dray ignores it", "use `labels:` (a map)"),
        ("10:5: services.web.drain: `drain` is deprecated and ignored", "use `termination: {grace: N}` for the stop grace period"),
        ("11:23: services.web.scale.cooldown: `cooldown` is a Convox v2 key, ignored", "remove it"),
        ("12:23: services.web.health: unknown key `intervl`, ignored", "did you mean `interval`?"),
        ("13:5: services.web: unknown key `frobnicate`, ignored", ""),
        ("14:1: convox.yml: unknown key `servics`, ignored", "did you mean `services`?"),
        ("16:53: timers.t.policies: `policies` is a Convox v2 (rack) key; Dray ignores it", "remove it"),
    ];
    assert_eq!(w.len(), expect.len(), "{w:#?}");
    for ((msg, hint), (want_msg, want_hint)) in w.iter().zip(expect) {
        assert_eq!(msg, want_msg);
        if !want_hint.is_empty() {
            assert_eq!(hint.as_deref(), Some(want_hint), "{msg}");
        }
    }
    let s = svc(&l.manifest, "web");
    assert_eq!(s.drain, Some(60));
    assert!(s.extra.contains_key("enviroment") && s.extra.contains_key("links"));
    assert!(l.manifest.extra.contains_key("servics"));
    // Kept keys show in the normalized output.
    assert!(l
        .manifest
        .to_yaml()
        .contains("    enviroment:\n      - A\n"));
}

#[test]
fn cloud_only_keys_are_parsed_or_kept() {
    let l = ok(include_str!("fixtures/cloud.yml"));
    let m = &l.manifest;
    let web = svc(m, "web");
    assert_eq!(web.scale.gpu.clone().unwrap().vendor, "amd");
    assert_eq!(web.scale.keda.clone().unwrap()["pollingInterval"], 15);
    assert_eq!(web.scale.vpa.clone().unwrap()["updateMode"], "Off");
    assert_eq!(
        web.scale.autoscale.clone().unwrap().extra["cooldownPeriod"],
        120
    );
    assert_eq!(
        web.security_context
            .clone()
            .unwrap()
            .seccomp_profile
            .as_deref(),
        Some("RuntimeDefault")
    );
    assert_eq!(
        web.image_pull_secrets[0].password_env.as_deref(),
        Some("GHCR_TOKEN")
    );
    assert_eq!(web.node_selector_labels["convox.io/label"], "web");
    assert_eq!(web.dns_config, Some(DnsConfig { ndots: 2 }));
    assert_eq!(web.certificate.clone().unwrap().duration, "2160h");
    assert_eq!(
        web.access_control.clone().unwrap()["awsPodIdentity"]["policyArns"][0],
        "arn:aws:iam::aws:policy/ReadOnlyAccess"
    );
    assert_eq!(m.budget.clone().unwrap().monthly_cap_usd, Some(500.0));
    assert_eq!(
        short(&l.warnings),
        ["78:9: services.web.volumeOptions[1].awsEfs: `awsEfs` volumes are cloud-only; Dray does not mount them"]
    );
}

#[test]
fn positions_of_keys_are_exposed() {
    let m = manifest("services:\n  web:\n    image: x\n    environment:\n      - A=1\ntimers:\n  t: {schedule: \"@daily\", command: x, service: web}\n");
    assert_eq!(m.position("services.web"), Some(Pos { line: 2, column: 3 }));
    assert_eq!(
        m.position("services.web.environment[0]"),
        Some(Pos { line: 5, column: 9 })
    );
    assert_eq!(
        m.position("timers.t.command"),
        Some(Pos {
            line: 7,
            column: 27
        })
    );
    assert_eq!(m.position("nope"), None);
}

#[test]
fn multiple_documents_use_the_first() {
    let l = ok("services:\n  web:\n    image: x\n---\nservices:\n  other:\n    image: y\n");
    assert_eq!(l.manifest.services.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(
        short(&l.warnings),
        ["4:1: only the first YAML document is used; this one is ignored"]
    );
}

#[test]
fn crlf_line_endings() {
    let l = ok("services:\r\n  web:\r\n    image: x\r\n    port: 3000\r\n    bogus: 1\r\n");
    assert_eq!(svc(&l.manifest, "web").main_port(), Some(3000));
    assert_eq!(
        short(&l.warnings),
        ["5:5: services.web: unknown key `bogus`, ignored"]
    );
}
