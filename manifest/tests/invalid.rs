//! A table of invalid manifests: each must fail with exactly these errors, at these positions.
//! Messages of Convox's rules are Convox's own text (reference §3.8).

mod common;
use common::*;

struct Case {
    name: &'static str,
    yaml: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// `line:column: message`, in file order.
    errors: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "service name rule",
        yaml: "services:\n  Web_App:\n    image: x\n",
        env: &[],
        errors: &["2:3: service name Web_App invalid, must contain only lowercase alphanumeric and dashes"],
    },
    Case {
        name: "resource name rule",
        yaml: "resources:\n  1resource:\n    type: postgres\nservices:\n  web:\n    image: x\n",
        env: &[],
        errors: &["2:3: resource name 1resource invalid, must contain only lowercase alphanumeric and dashes"],
    },
    Case {
        name: "timer name rule",
        yaml: "services:\n  web:\n    image: x\ntimers:\n  timer_1:\n    schedule: \"0 * * * *\"\n    command: x\n    service: web\n",
        env: &[],
        errors: &["5:3: timer name timer_1 invalid, must contain only lowercase alphanumeric and dashes"],
    },
    Case {
        name: "deployment bounds",
        yaml: "services:\n  a:\n    image: x\n    deployment:\n      minimum: -1\n      maximum: 99\n  b:\n    image: x\n    deployment:\n      minimum: 101\n      maximum: 201\n",
        env: &[],
        errors: &[
            "5:7: service a deployment minimum can not be less than 0",
            "6:7: service a deployment maximum can not be less than 100",
            "10:7: service b deployment minimum can not be greater than 100",
            "11:7: service b deployment maximum can not be greater than 200",
        ],
    },
    Case {
        name: "deployment maximum written empty is 0, not the default",
        yaml: "services:\n  web:\n    image: x\n    deployment:\n      maximum:\n",
        env: &[],
        errors: &["5:7: service web deployment maximum can not be less than 100"],
    },
    Case {
        name: "internal and internalRouter",
        yaml: "services:\n  web:\n    image: x\n    internal: true\n    internalRouter: true\n",
        env: &[],
        errors: &["5:5: service web can not have both internal and internalRouter set as true"],
    },
    Case {
        name: "missing resource",
        yaml: "resources:\n  database:\n    type: postgres\nservices:\n  web:\n    image: x\n    resources:\n      - database\n      - databse:DB_URL\n",
        env: &[],
        errors: &["9:9: service web references a resource that does not exist: databse"],
    },
    Case {
        name: "convox testdata validate.yml",
        yaml: "resources:\n  1resource:\n    type: postgres\nservices:\n  serviceF:\n    build: .\n    resources:\n      - foo\ntimers:\n  timer_1:\n    service: someservice\n",
        env: &[],
        errors: &[
            "2:3: resource name 1resource invalid, must contain only lowercase alphanumeric and dashes",
            "5:3: service name serviceF invalid, must contain only lowercase alphanumeric and dashes",
            "8:9: service serviceF references a resource that does not exist: foo",
            "10:3: timer name timer_1 invalid, must contain only lowercase alphanumeric and dashes",
            "10:3: timer timer_1 has no schedule",
            "10:3: timer timer_1 has no command",
            "11:5: timer timer_1 references a service that does not exist: someservice",
        ],
    },
    Case {
        name: "schedule with ? inside a field",
        yaml: "services:\n  web:\n    image: x\ntimers:\n  t:\n    schedule: \"0/5? * * * *\"\n    command: x\n    service: web\n",
        env: &[],
        errors: &["6:5: timer t invalid, schedule cannot contain ?"],
    },
    Case {
        name: "bad cron",
        yaml: "services:\n  web:\n    image: x\ntimers:\n  t:\n    schedule: \"0 25 * * *\"\n    command: x\n    service: web\n",
        env: &[],
        errors: &["6:5: timer t schedule \"0 25 * * *\" is invalid: hour value 25 is out of range 0-23"],
    },
    Case {
        name: "cron with too few fields",
        yaml: "services:\n  web:\n    image: x\ntimers:\n  t:\n    schedule: \"0 3 * *\"\n    command: x\n    service: web\n",
        env: &[],
        errors: &["6:5: timer t schedule \"0 3 * *\" is invalid: schedule has 4 fields, needs 5 (minute hour day-of-month month day-of-week)"],
    },
    Case {
        name: "timer concurrency",
        yaml: "services:\n  web:\n    image: x\ntimers:\n  t:\n    schedule: \"@daily\"\n    command: x\n    service: web\n    concurrency: Sometimes\n",
        env: &[],
        errors: &["9:18: timers.t.concurrency: `Sometimes` is not a concurrency policy"],
    },
    Case {
        name: "balancers",
        yaml: "services:\n  web:\n    image: x\n    ports: [3000]\nbalancers:\n  a:\n    ports:\n      80: 3000\n  b:\n    service: nope\n    ports: {}\n  c:\n    service: web\n    whitelist: [10.0.0.0/8, 10.0.0.1]\n    ports:\n      80: 3000\n      81: {port: 3000, protocol: udp}\n",
        env: &[],
        errors: &[
            "6:3: balancer a has blank service",
            "10:5: balancer b refers to unknown service nope",
            "11:5: balancer b has no ports",
            "14:29: balancer c whitelist 10.0.0.1 is not a valid cidr range",
            "15:5: balancer c mixes TCP and UDP ports",
        ],
    },
    Case {
        name: "balancer listen port not a number",
        yaml: "services:\n  web:\n    image: x\n    ports: [3000]\nbalancers:\n  b:\n    service: web\n    ports:\n      http: 3000\n",
        env: &[],
        errors: &[
            "8:5: balancer b has no ports",
            "9:7: balancers.b.ports: listen port `http` is not a number",
        ],
    },
    Case {
        name: "Praxis-era balancer (reference 3.9)",
        yaml: "services:\n  web:\n    image: x\n    port: 4000\nbalancers:\n  web:\n    \"80/http\": \"http://web:4000\"\n",
        env: &[],
        errors: &["6:3: balancer web has no ports", "6:3: balancer web has blank service"],
    },
    Case {
        name: "required env, positioned at the first missing declaration",
        yaml: "environment:\n  - GLOBAL\nservices:\n  web:\n    image: x\n    environment:\n      - B\n      - A\n      - C=default\n",
        env: &[("C", "set")],
        errors: &["8:9: required env: A, B, GLOBAL"],
    },
    Case {
        name: "volumeOptions",
        yaml: "services:\n  web:\n    image: x\n    volumeOptions:\n      - emptyDir: {mountPath: /a}\n      - emptyDir: {id: b}\n      - emptyDir: {id: c, mountPath: /c, medium: Disk}\n      - awsEfs: {id: d, mountPath: /d, accessMode: ReadWrite}\n",
        env: &[],
        errors: &[
            "5:9: emptyDir.id is required",
            "6:9: emptyDir.mountPath is required",
            "7:9: emptyDir.medium's allowed values: Memory",
            "8:9: awsEfs.accessMode must be one of these values: ReadOnlyMany, ReadWriteMany, ReadWriteOnce",
        ],
    },
    Case {
        name: "securityContext",
        yaml: "services:\n  web:\n    image: x\n    securityContext:\n      runAsNonRoot: true\n      runAsUser: 0\n      capabilities:\n        add: [CAP_NET_ADMIN]\n      seccompProfile: Default\n",
        env: &[],
        errors: &[
            "6:7: service web: securityContext.runAsNonRoot is true but runAsUser is 0 (root)",
            "7:7: service web: securityContext.capabilities.add: capability names must not have the CAP_ prefix: CAP_NET_ADMIN",
            "9:7: service web: securityContext.seccompProfile must be one of RuntimeDefault, Unconfined; got \"Default\"",
        ],
    },
    Case {
        name: "imagePullSecrets",
        yaml: "services:\n  web:\n    image: x\n    imagePullSecrets:\n      - {registry: https://ghcr.io, username: u, password: p}\n      - {registry: ghcr.io, username: u, password: p, passwordEnv: P}\n      - {registry: GHCR.io, username: u, password: p}\n      - {registry: ghcr.io, username: u, passwordEnv: P}\n      - {registry: ghcr.io, username: u, passwordEnv: Q}\n",
        env: &[],
        errors: &[
            "5:9: service web imagePullSecrets[0]: registry \"https://ghcr.io\" must be a host without a scheme (drop the `https://`)",
            "6:9: service web imagePullSecrets[1]: exactly one of password or passwordEnv is required",
            "7:9: service web imagePullSecrets[2]: registry \"GHCR.io\" must be lowercase",
            "9:9: service web imagePullSecrets[4]: duplicate registry \"ghcr.io\" (also declared at index 3); each registry may be declared at most once per service",
        ],
    },
    Case {
        name: "configMounts and configs",
        yaml: "configs:\n  - id: app\nservices:\n  web:\n    image: x\n    configMounts:\n      - {id: app, dir: /etc}\n      - {id: other, dir: /etc, filename: x}\n",
        env: &[],
        errors: &[
            "7:9: configMounts[*].filename is required",
            "8:9: config id: 'other' not found",
        ],
    },
    Case {
        name: "configs id",
        yaml: "configs:\n  - name: x\nservices:\n  web:\n    image: x\n",
        env: &[],
        errors: &["2:5: configs[*].id is required"],
    },
    Case {
        name: "scale and autoscale rules",
        yaml: "services:\n  a:\n    image: x\n    scale:\n      count: 5-3\n  b:\n    image: x\n    scale:\n      count: 2\n      autoscale:\n        cpu: {threshold: 150}\n  c:\n    image: x\n    scale:\n      count: 0-3\n      autoscale:\n        memory: {threshold: 50}\n        gpuUtilization: {threshold: 50}\n  d:\n    image: x\n    agent: true\n    scale:\n      count: 1-3\n      autoscale:\n        queueDepth: {threshold: 0}\n",
        env: &[],
        errors: &[
            "4:5: service a: scale.max must be >= scale.min",
            "8:5: service b: scale.max must be > scale.min when autoscale is enabled (ScaledObject would be a no-op)",
            "8:5: service b: scale.autoscale.cpu.threshold must be between 1 and 100",
            "14:5: service c: scale.autoscale.gpuUtilization requires scale.gpu.count >= 1",
            "22:5: service d: agent services render as DaemonSet and cannot use scale.autoscale or scale.keda",
            "22:5: service d: scale.autoscale.queueDepth.threshold must be > 0",
        ],
    },
    Case {
        name: "autoscale to zero with cpu only",
        yaml: "services:\n  e:\n    image: x\n    scale:\n      min: 0\n      max: 3\n      autoscale:\n        cpu: {threshold: 50}\n",
        env: &[],
        errors: &["4:5: service e: scale.min: 0 combined with only always-active autoscale triggers (cpu/memory/cron) will never scale to zero; KEDA's cpu/memory/cron scalers are always active. Add scale.autoscale.queueDepth, scale.autoscale.gpuUtilization, or a scale.autoscale.custom[] prometheus/external trigger, or raise scale.min to 1."],
    },
    Case {
        name: "limits below requests",
        yaml: "services:\n  web:\n    image: x\n    scale:\n      cpu: 500\n      memory: 1024\n      limit:\n        cpu: 250\n        memory: 512\n",
        env: &[],
        errors: &[
            "8:9: cpu limit can not be less cpu request",
            "9:9: memory limit can not be less memory request",
        ],
    },
    Case {
        name: "reserved labels",
        yaml: "labels:\n  app: x\nservices:\n  web:\n    image: x\n    labels:\n      service: y\n",
        env: &[],
        errors: &[
            "2:3: reserved label key 'app' is not allowed",
            "7:7: reserved label key 'service' is not allowed",
        ],
    },
    Case {
        name: "budget rules",
        yaml: "services:\n  web:\n    image: x\nbudget:\n  atCapAction: auto-shutdown\n  notifyBeforeMinutes: 2\n  shutdownGracePeriod: 2h\n  shutdownOrder: priority-annotation\n  recoveryMode: sometime\n",
        env: &[],
        errors: &[
            "4:1: budget.atCapAction \"auto-shutdown\" requires budget.monthlyCapUsd > 0; cannot shut down on cap breach without a cap",
            "5:3: budget.atCapAction \"auto-shutdown\" requires budget.atCapWebhookUrl to be set; auto-shutdown silently killing services without notification is rejected by design",
            "6:3: budget.notifyBeforeMinutes must be between 5 and 1440; got 2",
            "7:3: budget.shutdownGracePeriod must be between 0s and 1h; got 2h",
            "8:3: budget.shutdownOrder \"priority-annotation\" reserved for 3.24.7; use \"largest-cost\" or \"newest\"",
            "9:3: budget.recoveryMode must be one of \"auto-on-reset\", \"manual\"; got \"sometime\"",
        ],
    },
    Case {
        name: "budget auto-shutdown with every service exempt",
        yaml: "services:\n  web:\n    image: x\nbudget:\n  monthlyCapUsd: 100\n  atCapAction: auto-shutdown\n  atCapWebhookUrl: https://h.example.org\n  neverAutoShutdown: [web]\n",
        env: &[],
        errors: &["6:3: budget.atCapAction \"auto-shutdown\" with all services listed in neverAutoShutdown leaves no services eligible; either remove a service from neverAutoShutdown or use atCapAction \"block-new-deploys\""],
    },
    Case {
        name: "type errors",
        yaml: "services:\n  web:\n    image: x\n    port: [3000]\n    command: [bin/web, --port, \"3000\"]\n    timeout: \"30\"\n    internal: \"true\"\n    whitelist: [10.0.0.0/8]\n    health: 8080\n    ports: [5000/http, 70000]\n",
        env: &[],
        errors: &[
            "4:11: services.web.port: expected an integer or \"scheme:port\", found a list",
            "5:14: services.web.command: expected a string (a list is a v2 form that v3 rejects), found a list",
            "6:14: services.web.timeout: expected an integer, found the string \"30\"",
            "7:15: services.web.internal: expected true or false, found the string \"true\"",
            "8:16: services.web.whitelist: expected a comma-separated string, found a list",
            "9:13: services.web.health: expected a path or a map, found the number `8080`",
            "10:13: services.web.ports[0]: protocol `http` must be tcp or udp",
            "10:24: services.web.ports[1]: port 70000 is out of range",
        ],
    },
    Case {
        name: "port map without a port",
        yaml: "services:\n  web:\n    image: x\n    port: {scheme: https}\n",
        env: &[],
        errors: &["4:11: services.web.port: could not parse port: no `port:` in the map"],
    },
    Case {
        name: "port string that is not a port",
        yaml: "services:\n  web:\n    image: x\n    port: https:web\n",
        env: &[],
        errors: &["4:11: services.web.port: \"https:web\" is not a port"],
    },
    Case {
        name: "command that does not split",
        yaml: "services:\n  web:\n    image: x\n    command: echo \"unclosed\n",
        env: &[],
        errors: &["4:14: services.web.command: cannot split the command into arguments: missing closing quote"],
    },
    Case {
        name: "compose-style environment map",
        yaml: "services:\n  web:\n    image: x\n    environment:\n      FOO: bar\n",
        env: &[],
        errors: &["5:7: services.web.environment: expected a list of KEY or KEY=default, found a map"],
    },
    Case {
        name: "Gen1 labels list (reference 3.9, bitzesty/vigilion-scanner)",
        yaml: "services:\n  web:\n    image: x\n    labels:\n      - convox.port.443.protocol=https\n      - convox.port.443.proxy=true\n",
        env: &[],
        errors: &["5:7: services.web.labels: expected a map of `key: value`, found a list"],
    },
    Case {
        name: "v2 agent map (reference 3.9, convox-examples/datadog)",
        yaml: "services:\n  datadog:\n    image: datadog/agent\n    agent:\n      enabled: true\n      ports:\n        - 8125/udp\n",
        env: &[],
        errors: &["5:7: agent ports are now specified at the service level"],
    },
    Case {
        name: "agent that is not a bool",
        yaml: "services:\n  a:\n    image: x\n    agent: sometimes\n",
        env: &[],
        errors: &["4:12: could not parse agent: sometimes"],
    },
    Case {
        name: "the N+ count form fails, as in Convox",
        yaml: "services:\n  web:\n    image: x\n    scale:\n      count: 2+\n",
        env: &[],
        errors: &["5:14: services.web.scale.count: invalid scale: 2+"],
    },
    Case {
        name: "duplicate service",
        yaml: "services:\n  web:\n    image: x\n  web:\n    image: y\n",
        env: &[],
        errors: &["4:3: services: duplicate key `web` (first written at line 2)"],
    },
    Case {
        name: "top level is a list",
        yaml: "- services\n- web\n",
        env: &[],
        errors: &["1:1: the manifest must be a map of top-level keys (services:, resources:, timers:, …), found a list"],
    },
    Case {
        name: "interpolated value of the wrong type (reference 3.9)",
        yaml: "appSettings:\n  awsLogs:\n    cwRetention: ${LOG_RETENTION_DAYS}\nservices:\n  web:\n    image: x\n",
        env: &[("LOG_RETENTION_DAYS", "thirty")],
        errors: &["3:18: appSettings.awsLogs.cwRetention: expected an integer, found the string \"thirty\""],
    },
    Case {
        name: "error after an interpolation keeps the original column",
        yaml: "services:\n  web:\n    image: ${IMAGE_WITH_A_LONG_NAME}\n    command: [x]\n    domain: ${HOST}\n    internal: ${INTERNAL}\n",
        env: &[("IMAGE_WITH_A_LONG_NAME", "registry.example.org/team/app:1.2.3"), ("HOST", "a.example.org"), ("INTERNAL", "maybe")],
        errors: &[
            "4:14: services.web.command: expected a string (a list is a v2 form that v3 rejects), found a list",
            "6:15: services.web.internal: expected true or false, found the string \"maybe\"",
        ],
    },
    Case {
        name: "resource types and names",
        yaml: "resources:\n  cache:\n    options: {}\n  my-very-long-database-name:\n    type: rds-postgres\nservices:\n  web:\n    image: x\n",
        env: &[],
        errors: &[
            "2:3: resource \"cache\" has blank type",
            "4:3: resource name my-very-long-database-name invalid for type rds-postgres, must start with a letter, end with a letter or digit, and be at most 20 characters",
        ],
    },
    Case {
        name: "YAML: tab indentation",
        yaml: "services:\n  web:\n\timage: x\n",
        env: &[],
        errors: &["3:2: invalid YAML: tabs disallowed within this context (block indentation)"],
    },
    Case {
        name: "YAML: bad indentation",
        yaml: "services:\n  web:\n    image: x\n   port: 3000\n",
        env: &[],
        errors: &["4:8: invalid YAML: while parsing a block mapping, did not find expected key"],
    },
    Case {
        name: "YAML: unquoted cron schedule",
        yaml: "timers:\n  t:\n    schedule: */5 * * * *\n",
        env: &[],
        errors: &["3:15: invalid YAML: while parsing node, found unknown anchor"],
    },
    Case {
        name: "YAML: unclosed quote",
        yaml: "services:\n  web:\n    command: \"bin/web\n",
        env: &[],
        errors: &["3:14: invalid YAML: while scanning a quoted scalar, found unexpected end of stream"],
    },
];

#[test]
fn invalid_manifests_fail_with_exact_errors() {
    let mut failures = Vec::new();
    for case in CASES {
        let got = short(&errs_env(case.yaml, case.env).errors);
        let want: Vec<String> = case.errors.iter().map(|s| s.to_string()).collect();
        if got != want {
            failures.push(format!(
                "case {:?}\n  want: {want:#?}\n  got:  {got:#?}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_has_a_hint_and_the_display_format() {
    for case in CASES {
        let e = errs_env(case.yaml, case.env);
        for d in &e.errors {
            let text = d.to_string();
            assert!(
                text.starts_with(&format!("convox.yml:{}:{}: error: ", d.line, d.column)),
                "{text}"
            );
            // Convox rules whose fix is obvious from the message may have no hint; most have one.
            if let Some(h) = &d.hint {
                assert!(text.ends_with(&format!("\n  hint: {h}")), "{text}");
            }
        }
        // Display is one error per line (plus hint lines).
        let shown = e.to_string();
        assert_eq!(
            shown.lines().filter(|l| !l.starts_with("  hint: ")).count(),
            e.errors.len(),
            "{shown}"
        );
    }
}

#[test]
fn hints_say_what_to_write() {
    let e = errs("services:\n  web:\n    image: x\n    command: [bin/web, --name, \"a b\"]\n");
    assert_eq!(
        e.errors[0].hint.as_deref(),
        Some("write `command: bin/web --name 'a b'`")
    );
    let e = errs("services:\n  web:\n    image: x\n    environment:\n      FOO: bar\n");
    assert_eq!(
        e.errors[0].hint.as_deref(),
        Some("write a list of KEY=default: `- FOO=bar` (or `- FOO` to require it)")
    );
    let e = errs("services:\n  Web_App:\n    image: x\n");
    assert_eq!(
        e.errors[0].hint.as_deref(),
        Some("rename it, for example to `web-app`")
    );
    let e = errs("resources:\n  database:\n    type: postgres\nservices:\n  web:\n    image: x\n    resources: [databse]\n");
    assert_eq!(
        e.errors[0].hint.as_deref(),
        Some("did you mean `database`?")
    );
    let e = errs("timers:\n  t:\n    schedule: */5 * * * *\n");
    assert_eq!(
        e.errors[0].hint.as_deref(),
        Some("quote the value: `\"*/5 * * * *\"` (a plain value starting with `*` is read as an alias)")
    );
    let e = errs("services:\n  web:\n    image: x\n    timeout: \"30\"\n");
    assert_eq!(e.errors[0].hint.as_deref(), Some("remove the quotes: `30`"));
    let e = errs_env(
        "services:\n  web:\n    image: x\n    environment: [A, B]\n",
        &[],
    );
    assert_eq!(
        e.errors[0].hint.as_deref(),
        Some("set them with `dray env set A=… B=…` before deploying, or give a default in convox.yml (`- A=value`)")
    );
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let e = errs("services:\n  A:\n    image: x\n  B:\n    image: x\n    port: nope\n");
    assert_eq!(e.errors.len(), 3, "{e}");
}

#[test]
fn errors_keep_warnings_seen_before_failing() {
    let e = errs("services:\n  web:\n    image: x\n    enviroment: [A]\n    port: [1]\n");
    assert_eq!(short(&e.errors).len(), 1);
    assert_eq!(
        short(&e.warnings),
        vec!["4:5: services.web: unknown key `enviroment`, ignored"]
    );
}

#[test]
fn every_error_in_the_table_has_a_hint() {
    for case in CASES {
        for d in errs_env(case.yaml, case.env).errors {
            assert!(d.hint.is_some(), "case {:?}: no hint for {d}", case.name);
        }
    }
}
