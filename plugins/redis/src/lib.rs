//! # The Dray redis plugin
//!
//! Serves the `redis` resource type: a container from the official image
//! (`redis:<version>`, or the `image:` override), configured only through
//! `redis-server` arguments so `redis:7` works unchanged with host
//! networking: `--port <allocated port>`, `--requirepass`, append-only
//! persistence into a data volume mounted at `/data`.
//!
//! Unlike Convox, the server requires a password (host networking would
//! otherwise expose an open redis on the instance); it is generated once and
//! kept in plugin state, and linked as `PASS` and inside `URL`
//! (`redis://:PASS@HOST:PORT`). `REDISCLI_AUTH` is set in the container so
//! `redis-cli` (health check, console) authenticates without a password on
//! the command line.
//!
//! This crate only decides; it never talks to redis.

use dray_pdk::{
    endpoint, invalid, kv, output, secret_output, unsupported, ContainerBuilder, DataCommand,
    DataOpKind, DesiredObject, Error, Host, ObservedObject, OptionKind, OptionSchema, Options,
    Output, PluginDescription, Realized, ResourcePlan, ResourcePlugin, ResourceSpec, ResourceType,
};

/// The default major version when `options.version` is absent.
pub const DEFAULT_VERSION: &str = "7";
/// The object name of the container.
pub const CONTAINER: &str = "redis";

/// The plugin.
pub struct Redis;

fn opt(name: &str, description: &str, kind: OptionKind, default: Option<&str>) -> OptionSchema {
    OptionSchema {
        name: name.into(),
        description: description.into(),
        kind,
        required: false,
        default_value: default.map(Into::into),
    }
}

fn password(host: &dyn Host, spec: &ResourceSpec) -> Result<String, Error> {
    host.secret_once(&format!("{}/{}/password", spec.app, spec.name), 32)
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
            format!("version must look like 7 or 7.2, got {version:?}"),
        ));
    }
    Ok(format!("redis:{version}"))
}

impl ResourcePlugin for Redis {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "redis".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Redis in a container (official redis image)".into(),
            types: vec![ResourceType {
                name: "redis".into(),
                description: "Redis in a container (official redis image)".into(),
                options: vec![
                    opt(
                        "version",
                        "the image tag (redis:<version>)",
                        OptionKind::Text,
                        Some(DEFAULT_VERSION),
                    ),
                    opt(
                        "storage",
                        "data volume size in GB (append-only file)",
                        OptionKind::Integer,
                        Some("1"),
                    ),
                    opt(
                        "persistence",
                        "keep data across restarts (append-only file)",
                        OptionKind::Boolean,
                        Some("true"),
                    ),
                    opt("mem", "memory limit in MB", OptionKind::Integer, None),
                    opt(
                        "cpu",
                        "CPU shares (1024 = one CPU)",
                        OptionKind::Integer,
                        None,
                    ),
                ],
            }],
        }
    }

    fn plan(
        host: &dyn Host,
        spec: &ResourceSpec,
        _observed: &[ObservedObject],
    ) -> Result<ResourcePlan, Error> {
        Self::validate(host, spec)?;
        let opts = Options::new(spec);
        let image = image(spec)?;
        let pass = password(host, spec)?;
        let port = spec.port.to_string();
        let persistence = opts.bool("persistence", true)?;
        let mut builder = ContainerBuilder::new(CONTAINER, image)
            .command(["redis-server", "--port", port.as_str(), "--requirepass"])
            .args([pass.as_str()])
            .env("REDISCLI_AUTH", pass.as_str())
            .tcp_port("redis", spec.port)
            .health_exec(["redis-cli", "-p", port.as_str(), "ping"])
            .health_timing(2_000, 2_000, 10, 2_000);
        if persistence {
            builder = builder
                .args(["--appendonly", "yes", "--dir", "/data"])
                .volume("data", "/data", opts.u32("storage", 1)?);
        } else {
            builder = builder.args(["--save", "", "--appendonly", "no"]);
        }
        if opts.get("mem").is_some() {
            let mb = opts.u32("mem", 0)?;
            if mb < 16 {
                return Err(invalid(
                    Some("options.mem"),
                    format!("mem must be at least 16 (MB), got {mb}"),
                ));
            }
            // Leave headroom for redis' own overhead under the cgroup limit.
            builder = builder
                .memory_mb(mb)
                .args(["--maxmemory".to_string(), format!("{}mb", mb * 3 / 4)]);
        }
        if opts.get("cpu").is_some() {
            builder = builder.cpu_shares(opts.u32("cpu", 1024)?);
        }
        Ok(ResourcePlan {
            objects: vec![DesiredObject::Container(builder.build())],
            diagnostics: Vec::new(),
        })
    }

    fn outputs(
        host: &dyn Host,
        spec: &ResourceSpec,
        realized: &Realized,
    ) -> Result<Vec<Output>, Error> {
        let ep = endpoint(realized, CONTAINER)?;
        let pass = password(host, spec)?;
        Ok(vec![
            secret_output("URL", format!("redis://:{pass}@{}:{}", ep.host, ep.port)),
            output("USER", ""),
            secret_output("PASS", pass),
            output("HOST", ep.host.clone()),
            output("PORT", ep.port.to_string()),
            output("NAME", ""),
        ])
    }

    fn data_op(
        host: &dyn Host,
        spec: &ResourceSpec,
        realized: &Realized,
        op: DataOpKind,
    ) -> Result<DataCommand, Error> {
        let _ = endpoint(realized, CONTAINER)?;
        let pass = password(host, spec)?;
        let port = spec.port.to_string();
        let (command, tty) = match op {
            DataOpKind::Console => (vec!["redis-cli", "-p", port.as_str()], true),
            DataOpKind::Export => (vec!["redis-cli", "-p", port.as_str(), "--rdb", "-"], false),
            DataOpKind::Import => {
                return Err(unsupported(
                    "redis import is not supported: restore an RDB snapshot instead",
                ))
            }
        };
        Ok(DataCommand {
            object: CONTAINER.into(),
            command: command.into_iter().map(str::to_string).collect(),
            env: vec![kv("REDISCLI_AUTH", pass)],
            tty,
        })
    }
}

dray_pdk::export_resource_plugin!(Redis);

#[cfg(test)]
mod tests {
    use super::*;
    use dray_pdk::{Endpoint, FakeHost};

    fn spec(options: &[(&str, &str)]) -> ResourceSpec {
        ResourceSpec {
            app: "shop".into(),
            name: "cache".into(),
            type_name: "redis".into(),
            options: options.iter().map(|(k, v)| kv(*k, *v)).collect(),
            image: None,
            port: 16379,
        }
    }

    fn container(plan: &ResourcePlan) -> &dray_pdk::ContainerSpec {
        match &plan.objects[0] {
            DesiredObject::Container(c) => c,
            other => panic!("expected a container, got {other:?}"),
        }
    }

    #[test]
    fn plans_redis_server_arguments() {
        let host = FakeHost::new();
        let plan = Redis::plan(&host, &spec(&[]), &[]).unwrap();
        let c = container(&plan);
        assert_eq!(c.image, "redis:7");
        assert_eq!(c.entrypoint, None, "the image's entrypoint is kept");
        assert_eq!(&c.command[..3], &["redis-server", "--port", "16379"]);
        assert!(c.command.contains(&"--appendonly".to_string()));
        assert_eq!(c.volumes[0].path, "/data");
        assert_eq!(c.ports[0].number, 16379);
        let pass = &c
            .env
            .iter()
            .find(|e| e.key == "REDISCLI_AUTH")
            .unwrap()
            .value;
        assert_eq!(pass.len(), 32);
        assert!(c.command.contains(pass));
    }

    #[test]
    fn version_image_and_persistence_options() {
        let host = FakeHost::new();
        let plan = Redis::plan(
            &host,
            &spec(&[("version", "6.2"), ("persistence", "false"), ("mem", "256")]),
            &[],
        )
        .unwrap();
        let c = container(&plan);
        assert_eq!(c.image, "redis:6.2");
        assert!(c.volumes.is_empty());
        assert_eq!(c.memory_mb, Some(256));
        assert!(c.command.contains(&"192mb".to_string()));
        let mut s = spec(&[]);
        s.image = Some("valkey/valkey:8".into());
        assert_eq!(
            container(&Redis::plan(&host, &s, &[]).unwrap()).image,
            "valkey/valkey:8"
        );
        assert!(Redis::plan(&host, &spec(&[("storage", "x")]), &[]).is_err());
    }

    #[test]
    fn outputs_and_console() {
        let host = FakeHost::new();
        let s = spec(&[]);
        let realized = Realized {
            endpoints: vec![Endpoint {
                name: CONTAINER.into(),
                host: "10.0.0.7".into(),
                port: 16379,
            }],
        };
        let out = Redis::outputs(&host, &s, &realized).unwrap();
        let get = |k: &str| out.iter().find(|o| o.key == k).unwrap().value.clone();
        assert_eq!(
            get("URL"),
            format!("redis://:{}@10.0.0.7:16379", get("PASS"))
        );
        assert_eq!(get("PORT"), "16379");
        let console = Redis::data_op(&host, &s, &realized, DataOpKind::Console).unwrap();
        assert_eq!(console.command[0], "redis-cli");
        assert!(console.tty);
        assert!(matches!(
            Redis::data_op(&host, &s, &realized, DataOpKind::Import),
            Err(Error::Unsupported(_))
        ));
        // Same password across plan and outputs.
        let plan = Redis::plan(&host, &s, &[]).unwrap();
        assert!(container(&plan).command.contains(&get("PASS")));
    }
}
