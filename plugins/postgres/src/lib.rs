//! # The Dray postgres plugin
//!
//! Serves two resource types:
//!
//! * `postgres`: a container from the official image (`postgres:<version>`,
//!   or the `image:` override) driven through the image's documented
//!   contract: `docker-entrypoint.sh`, `POSTGRES_USER`, `POSTGRES_PASSWORD`,
//!   `POSTGRES_DB`, `PGDATA`, and the port through `PGPORT` and `-p`, so
//!   `postgres:16` works unchanged with host networking.
//! * `rds-postgres`: a managed database (AWS RDS); the plan asks the agent for
//!   a cloud database instead of a container.
//!
//! Credentials are generated once (`host.random-secret`) and kept in the
//! plugin's state under `<app>/<resource>/password`, so every plan returns
//! the same password.
//!
//! This crate only decides; it must never try to reach the database or the
//! network itself (the component has no network access anyway).

use dray_pdk::{
    endpoint, error_diagnostic, invalid, kv, output, secret_output, unsupported,
    warning_diagnostic, CloudDatabaseSpec, ContainerBuilder, DataCommand, DataOpKind,
    DesiredObject, Diagnostic, Error, Host, ObservedObject, OptionKind, OptionSchema, Options,
    Output, PluginDescription, Realized, ResourcePlan, ResourcePlugin, ResourceSpec, ResourceType,
};

/// The database user created in every postgres resource (as in Convox).
pub const USER: &str = "app";
/// The database created in every postgres resource (as in Convox).
pub const DATABASE: &str = "app";
/// The default major version when `options.version` is absent.
pub const DEFAULT_VERSION: &str = "16";
/// Where the data volume is mounted in the container.
pub const DATA_MOUNT: &str = "/var/lib/postgresql/data";
/// `PGDATA`: a subdirectory of the mount, as the image's docs recommend.
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// The object name of the container in `postgres` plans.
pub const CONTAINER: &str = "postgres";
/// The object name of the cloud database in `rds-postgres` plans.
pub const CLOUD_DB: &str = "database";

/// The plugin.
pub struct Postgres;

fn opt(name: &str, description: &str, kind: OptionKind, default: Option<&str>) -> OptionSchema {
    OptionSchema {
        name: name.into(),
        description: description.into(),
        kind,
        required: false,
        default_value: default.map(Into::into),
    }
}

fn required(name: &str, description: &str) -> OptionSchema {
    OptionSchema {
        name: name.into(),
        description: description.into(),
        kind: OptionKind::Text,
        required: true,
        default_value: None,
    }
}

fn password_key(spec: &ResourceSpec) -> String {
    format!("{}/{}/password", spec.app, spec.name)
}

fn password(host: &dyn Host, spec: &ResourceSpec) -> Result<String, Error> {
    host.secret_once(&password_key(spec), 32)
}

fn image(spec: &ResourceSpec) -> Result<String, Error> {
    if let Some(image) = spec.image.as_deref().filter(|i| !i.trim().is_empty()) {
        return Ok(image.to_string());
    }
    let version = Options::new(spec).string("version", DEFAULT_VERSION);
    if version.is_empty()
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
    {
        return Err(invalid(
            Some("options.version"),
            format!("version must look like 16 or 15.4, got {version:?}"),
        ));
    }
    Ok(format!("postgres:{version}"))
}

fn url(pass: &str, host: &str, port: u16, sslmode: &str) -> String {
    format!("postgres://{USER}:{pass}@{host}:{port}/{DATABASE}?sslmode={sslmode}")
}

fn plan_container(
    host: &dyn Host,
    spec: &ResourceSpec,
    observed: &[ObservedObject],
) -> Result<ResourcePlan, Error> {
    let opts = Options::new(spec);
    let storage = opts.u32("storage", 10)?;
    let image = image(spec)?;
    let pass = password(host, spec)?;
    let port = spec.port.to_string();
    let mut builder = ContainerBuilder::new(CONTAINER, image.clone())
        .entrypoint(["docker-entrypoint.sh"])
        .command(["postgres", "-p", port.as_str()])
        .env("POSTGRES_USER", USER)
        .env("POSTGRES_PASSWORD", pass)
        .env("POSTGRES_DB", DATABASE)
        .env("PGDATA", PGDATA)
        .env("PGPORT", port.as_str())
        // Host networking exposes 127.0.0.1 to every process of the host: require the
        // password there too (the official image trusts loopback by default).
        .env("POSTGRES_INITDB_ARGS", "--auth-host=scram-sha-256")
        .tcp_port("postgres", spec.port)
        .volume("data", DATA_MOUNT, storage)
        .health_exec([
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-p",
            port.as_str(),
            "-U",
            USER,
            "-d",
            DATABASE,
        ])
        .health_timing(2_000, 2_000, 15, 5_000);
    if let Some(mem) = opts.get("mem") {
        let mb = opts.u32("mem", 0)?;
        if mb < 64 {
            return Err(invalid(
                Some("options.mem"),
                format!("mem must be at least 64 (MB), got {mem}"),
            ));
        }
        builder = builder.memory_mb(mb);
    }
    if opts.get("cpu").is_some() {
        builder = builder.cpu_shares(opts.u32("cpu", 1024)?);
    }
    let mut diagnostics = Vec::new();
    if let Some(running) = observed.iter().find(|o| o.name == CONTAINER) {
        if let Some(current) = running.version.as_deref() {
            if major(current) != major(&image) && major(current).is_some() {
                diagnostics.push(warning_diagnostic(
                    Some("options.version"),
                    format!(
                        "changing {current} to {image} is a major version change: postgres \
                         cannot read the old data directory; export the data first and import \
                         it into a new resource"
                    ),
                ));
            }
        }
    }
    Ok(ResourcePlan {
        objects: vec![DesiredObject::Container(builder.build())],
        diagnostics,
    })
}

/// The major version of an image reference such as `postgres:15.4-alpine`.
fn major(image: &str) -> Option<&str> {
    let tag = image.rsplit_once(':')?.1;
    let end = tag.find(|c: char| !c.is_ascii_digit()).unwrap_or(tag.len());
    (end > 0).then(|| &tag[..end])
}

fn plan_rds(host: &dyn Host, spec: &ResourceSpec) -> Result<ResourcePlan, Error> {
    let opts = Options::new(spec);
    let class = opts.required("class")?.to_string();
    let version = opts.required("version")?.to_string();
    let port = opts.u32("port", 5432)?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            invalid(
                Some("options.port"),
                format!("port must be 1-65535, got {port}"),
            )
        })?;
    let db = CloudDatabaseSpec {
        name: CLOUD_DB.into(),
        engine: "postgres".into(),
        engine_version: version,
        instance_class: class,
        storage_gb: opts.u32("storage", 20)?,
        port,
        username: USER.into(),
        password: password(host, spec)?,
        database: DATABASE.into(),
        encrypted: opts.bool("encrypted", false)?,
        multi_az: opts.bool("durable", false)?,
        backup_retention_days: opts.u32("backupRetentionPeriod", 1)?,
        deletion_protection: opts.bool("deletionProtection", false)?,
        parameters: Vec::new(),
    };
    Ok(ResourcePlan {
        objects: vec![DesiredObject::CloudDatabase(db)],
        diagnostics: Vec::new(),
    })
}

impl ResourcePlugin for Postgres {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "postgres".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "PostgreSQL databases: containers from the official image, or AWS RDS".into(),
            types: vec![
                ResourceType {
                    name: "postgres".into(),
                    description: "PostgreSQL in a container (official postgres image)".into(),
                    options: vec![
                        opt(
                            "version",
                            "major version, the image tag (postgres:<version>)",
                            OptionKind::Text,
                            Some(DEFAULT_VERSION),
                        ),
                        opt(
                            "storage",
                            "data volume size in GB",
                            OptionKind::Integer,
                            Some("10"),
                        ),
                        opt("mem", "memory limit in MB", OptionKind::Integer, None),
                        opt(
                            "cpu",
                            "CPU shares (1024 = one CPU)",
                            OptionKind::Integer,
                            None,
                        ),
                    ],
                },
                ResourceType {
                    name: "rds-postgres".into(),
                    description: "PostgreSQL on AWS RDS".into(),
                    options: vec![
                        required("class", "instance class, e.g. db.t3.micro"),
                        required("version", "engine version, e.g. 16"),
                        opt(
                            "storage",
                            "allocated storage in GB",
                            OptionKind::Integer,
                            Some("20"),
                        ),
                        opt("port", "database port", OptionKind::Integer, Some("5432")),
                        opt(
                            "encrypted",
                            "encrypt storage at rest",
                            OptionKind::Boolean,
                            Some("false"),
                        ),
                        opt(
                            "durable",
                            "Multi-AZ deployment",
                            OptionKind::Boolean,
                            Some("false"),
                        ),
                        opt(
                            "backupRetentionPeriod",
                            "days of automated backups",
                            OptionKind::Integer,
                            Some("1"),
                        ),
                        opt(
                            "deletionProtection",
                            "refuse deletion through the API",
                            OptionKind::Boolean,
                            Some("false"),
                        ),
                    ],
                },
            ],
        }
    }

    fn validate(host: &dyn Host, spec: &ResourceSpec) -> Result<Vec<Diagnostic>, Error> {
        let _ = host;
        let description = Self::describe();
        let Some(ty) = description.types.iter().find(|t| t.name == spec.type_name) else {
            return Err(invalid(
                Some("type"),
                format!("postgres plugin does not serve type {:?}", spec.type_name),
            ));
        };
        let mut diagnostics = dray_pdk::validate_options(spec, ty);
        if spec.type_name == "postgres" {
            if let Err(Error::InvalidSpec(mut d)) = image(spec) {
                diagnostics.append(&mut d);
            }
            if spec.image.is_some() && Options::new(spec).get("version").is_some() {
                diagnostics.push(warning_diagnostic(
                    Some("image"),
                    "image overrides options.version",
                ));
            }
        } else if spec.image.is_some() {
            diagnostics.push(error_diagnostic(
                Some("image"),
                "rds-postgres does not run an image",
            ));
        }
        if diagnostics
            .iter()
            .any(|d| d.severity == dray_pdk::Severity::Error)
        {
            Err(Error::InvalidSpec(diagnostics))
        } else {
            Ok(diagnostics)
        }
    }

    fn plan(
        host: &dyn Host,
        spec: &ResourceSpec,
        observed: &[ObservedObject],
    ) -> Result<ResourcePlan, Error> {
        Self::validate(host, spec)?;
        match spec.type_name.as_str() {
            "postgres" => plan_container(host, spec, observed),
            _ => plan_rds(host, spec),
        }
    }

    fn outputs(
        host: &dyn Host,
        spec: &ResourceSpec,
        realized: &Realized,
    ) -> Result<Vec<Output>, Error> {
        let (object, sslmode) = if spec.type_name == "rds-postgres" {
            (CLOUD_DB, "require")
        } else {
            (CONTAINER, "disable")
        };
        let ep = endpoint(realized, object)?;
        let pass = password(host, spec)?;
        Ok(vec![
            secret_output("URL", url(&pass, &ep.host, ep.port, sslmode)),
            output("USER", USER),
            secret_output("PASS", pass),
            output("HOST", ep.host.clone()),
            output("PORT", ep.port.to_string()),
            output("NAME", DATABASE),
        ])
    }

    fn data_op(
        host: &dyn Host,
        spec: &ResourceSpec,
        realized: &Realized,
        op: DataOpKind,
    ) -> Result<DataCommand, Error> {
        if spec.type_name != "postgres" {
            return Err(unsupported(format!(
                "{op:?} on {} runs from a service container, not yet supported",
                spec.type_name
            )));
        }
        let _ = endpoint(realized, CONTAINER)?;
        let pass = password(host, spec)?;
        let port = spec.port.to_string();
        let conn = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", USER];
        let (command, tty): (Vec<String>, bool) = match op {
            DataOpKind::Export => (
                ["pg_dump", "--no-acl", "--no-owner"]
                    .iter()
                    .chain(conn.iter())
                    .chain([DATABASE].iter())
                    .map(|s| s.to_string())
                    .collect(),
                false,
            ),
            DataOpKind::Import => (
                ["psql", "-v", "ON_ERROR_STOP=1", "--quiet"]
                    .iter()
                    .chain(conn.iter())
                    .chain(["-d", DATABASE].iter())
                    .map(|s| s.to_string())
                    .collect(),
                false,
            ),
            // No pager: database images rarely ship one (`sh: pager: not found`).
            DataOpKind::Console => (
                ["psql", "-P", "pager=off"]
                    .iter()
                    .chain(conn.iter())
                    .chain(["-d", DATABASE].iter())
                    .map(|s| s.to_string())
                    .collect(),
                true,
            ),
        };
        Ok(DataCommand {
            object: CONTAINER.into(),
            command,
            env: vec![kv("PGPASSWORD", pass)],
            tty,
        })
    }
}

dray_pdk::export_resource_plugin!(Postgres);

#[cfg(test)]
mod tests {
    use super::*;
    use dray_pdk::{Endpoint, FakeHost, ObjectState, Probe};

    fn spec(type_name: &str, options: &[(&str, &str)]) -> ResourceSpec {
        ResourceSpec {
            app: "shop".into(),
            name: "database".into(),
            type_name: type_name.into(),
            options: options.iter().map(|(k, v)| kv(*k, *v)).collect(),
            image: None,
            port: 15432,
        }
    }

    fn container(plan: &ResourcePlan) -> &dray_pdk::ContainerSpec {
        match &plan.objects[0] {
            DesiredObject::Container(c) => c,
            other => panic!("expected a container, got {other:?}"),
        }
    }

    fn env<'a>(c: &'a dray_pdk::ContainerSpec, key: &str) -> &'a str {
        &c.env
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .value
    }

    #[test]
    fn plans_official_image_contract() {
        let host = FakeHost::new();
        let plan = Postgres::plan(
            &host,
            &spec("postgres", &[("version", "15"), ("storage", "10")]),
            &[],
        )
        .unwrap();
        let c = container(&plan);
        assert_eq!(c.image, "postgres:15");
        assert_eq!(
            c.entrypoint.as_deref(),
            Some(&["docker-entrypoint.sh".to_string()][..])
        );
        assert_eq!(c.command, vec!["postgres", "-p", "15432"]);
        assert_eq!(env(c, "POSTGRES_USER"), "app");
        assert_eq!(env(c, "POSTGRES_DB"), "app");
        assert_eq!(env(c, "PGDATA"), PGDATA);
        assert_eq!(env(c, "PGPORT"), "15432");
        assert_eq!(env(c, "POSTGRES_PASSWORD").len(), 32);
        assert_eq!(c.ports[0].number, 15432);
        assert_eq!(c.volumes[0].size_gb, 10);
        assert_eq!(c.volumes[0].path, DATA_MOUNT);
        assert!(
            matches!(c.health.as_ref().unwrap().probe, Probe::Exec(ref cmd) if cmd[0] == "pg_isready")
        );
    }

    #[test]
    fn default_version_and_image_override() {
        let host = FakeHost::new();
        let plan = Postgres::plan(&host, &spec("postgres", &[]), &[]).unwrap();
        assert_eq!(container(&plan).image, "postgres:16");
        let mut s = spec("postgres", &[]);
        s.image = Some("pgvector/pgvector:pg16".into());
        let plan = Postgres::plan(&host, &s, &[]).unwrap();
        assert_eq!(container(&plan).image, "pgvector/pgvector:pg16");
    }

    #[test]
    fn credentials_are_generated_once() {
        let host = FakeHost::new();
        let s = spec("postgres", &[]);
        let a = Postgres::plan(&host, &s, &[]).unwrap();
        let b = Postgres::plan(&host, &s, &[]).unwrap();
        assert_eq!(
            env(container(&a), "POSTGRES_PASSWORD"),
            env(container(&b), "POSTGRES_PASSWORD")
        );
        assert_eq!(host.secrets_generated(), 1);
        assert!(host.state().contains_key("shop/database/password"));
        // Another resource gets its own password.
        let mut other = s.clone();
        other.name = "cache".into();
        let c = Postgres::plan(&host, &other, &[]).unwrap();
        assert_ne!(
            env(container(&a), "POSTGRES_PASSWORD"),
            env(container(&c), "POSTGRES_PASSWORD")
        );
    }

    #[test]
    fn outputs_link_the_six_variables() {
        let host = FakeHost::new();
        let s = spec("postgres", &[]);
        let realized = Realized {
            endpoints: vec![Endpoint {
                name: CONTAINER.into(),
                host: "10.0.0.5".into(),
                port: 15432,
            }],
        };
        let out = Postgres::outputs(&host, &s, &realized).unwrap();
        let get = |k: &str| out.iter().find(|o| o.key == k).unwrap().value.clone();
        let pass = get("PASS");
        assert_eq!(
            get("URL"),
            format!("postgres://app:{pass}@10.0.0.5:15432/app?sslmode=disable")
        );
        assert_eq!(get("USER"), "app");
        assert_eq!(get("HOST"), "10.0.0.5");
        assert_eq!(get("PORT"), "15432");
        assert_eq!(get("NAME"), "app");
        assert!(out.iter().find(|o| o.key == "PASS").unwrap().secret);
        // Not realized yet: not-ready, so the agent retries.
        assert!(matches!(
            Postgres::outputs(&host, &s, &Realized { endpoints: vec![] }),
            Err(Error::NotReady(_))
        ));
    }

    #[test]
    fn rejects_bad_options() {
        let host = FakeHost::new();
        let err = Postgres::plan(
            &host,
            &spec("postgres", &[("storage", "lots"), ("colour", "red")]),
            &[],
        )
        .unwrap_err();
        let Error::InvalidSpec(d) = err else {
            panic!("{err:?}")
        };
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(Postgres::plan(
            &host,
            &spec("postgres", &[("version", "16; rm -rf /")]),
            &[]
        )
        .is_err());
        assert!(Postgres::plan(&host, &spec("mysql", &[]), &[]).is_err());
    }

    #[test]
    fn rds_plans_a_cloud_database() {
        let host = FakeHost::new();
        assert!(
            Postgres::plan(&host, &spec("rds-postgres", &[("version", "16")]), &[]).is_err(),
            "class is required"
        );
        let plan = Postgres::plan(
            &host,
            &spec(
                "rds-postgres",
                &[
                    ("class", "db.t3.micro"),
                    ("version", "16"),
                    ("durable", "true"),
                ],
            ),
            &[],
        )
        .unwrap();
        let DesiredObject::CloudDatabase(db) = &plan.objects[0] else {
            panic!()
        };
        assert_eq!(db.engine, "postgres");
        assert_eq!(db.instance_class, "db.t3.micro");
        assert_eq!(db.storage_gb, 20);
        assert!(db.multi_az);
        assert_eq!(db.password.len(), 32);
    }

    #[test]
    fn data_ops_run_in_the_container() {
        let host = FakeHost::new();
        let s = spec("postgres", &[]);
        let realized = Realized {
            endpoints: vec![Endpoint {
                name: CONTAINER.into(),
                host: "h".into(),
                port: 15432,
            }],
        };
        let export = Postgres::data_op(&host, &s, &realized, DataOpKind::Export).unwrap();
        assert_eq!(export.object, CONTAINER);
        assert_eq!(export.command[0], "pg_dump");
        assert_eq!(export.command.last().unwrap(), "app");
        assert_eq!(export.env[0].key, "PGPASSWORD");
        let import = Postgres::data_op(&host, &s, &realized, DataOpKind::Import).unwrap();
        assert_eq!(import.command[0], "psql");
        let console = Postgres::data_op(&host, &s, &realized, DataOpKind::Console).unwrap();
        assert!(console.tty);
    }

    #[test]
    fn warns_on_major_upgrade() {
        let host = FakeHost::new();
        let observed = [ObservedObject {
            name: CONTAINER.into(),
            state: ObjectState::Running,
            healthy: true,
            version: Some("postgres:15".into()),
            detail: None,
        }];
        let plan =
            Postgres::plan(&host, &spec("postgres", &[("version", "16")]), &observed).unwrap();
        assert_eq!(plan.diagnostics.len(), 1);
        let plan =
            Postgres::plan(&host, &spec("postgres", &[("version", "15")]), &observed).unwrap();
        assert!(plan.diagnostics.is_empty());
    }
}
