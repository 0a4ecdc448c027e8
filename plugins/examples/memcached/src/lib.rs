//! # Example plugin: memcached
//!
//! A complete Dray resource plugin written only against `dray-pdk` and the
//! "Writing a plugin" guide (`plugins/README.md`). It serves the `memcached`
//! type: a container from the official `memcached` image listening on the
//! port the agent allocated, linked as `MEMCACHED_URL=memcached://HOST:PORT`.
//!
//! It only decides; the agent runs the container.

use dray_pdk::{
    endpoint, invalid, output, ContainerBuilder, DesiredObject, Error, Host, ObservedObject,
    OptionKind, OptionSchema, Options, Output, PluginDescription, Realized, ResourcePlan,
    ResourcePlugin, ResourceSpec, ResourceType,
};

/// The plugin.
pub struct Memcached;

impl ResourcePlugin for Memcached {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "memcached".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "memcached in a container".into(),
            types: vec![ResourceType {
                name: "memcached".into(),
                description: "memcached (official image)".into(),
                options: vec![
                    OptionSchema {
                        name: "version".into(),
                        description: "image tag".into(),
                        kind: OptionKind::Text,
                        required: false,
                        default_value: Some("1.6".into()),
                    },
                    OptionSchema {
                        name: "mem".into(),
                        description: "cache size in MB".into(),
                        kind: OptionKind::Integer,
                        required: false,
                        default_value: Some("64".into()),
                    },
                ],
            }],
        }
    }

    fn plan(
        host: &dyn Host,
        spec: &ResourceSpec,
        _observed: &[ObservedObject],
    ) -> Result<ResourcePlan, Error> {
        // The default `validate` checks options against `describe`.
        Self::validate(host, spec)?;
        let opts = Options::new(spec);
        let mem = opts.u32("mem", 64)?;
        if mem == 0 {
            return Err(invalid(Some("options.mem"), "mem must be at least 1 (MB)"));
        }
        let image = match &spec.image {
            Some(image) => image.clone(),
            None => format!("memcached:{}", opts.string("version", "1.6")),
        };
        let port = spec.port.to_string();
        let mem_arg = mem.to_string();
        let container = ContainerBuilder::new("memcached", image)
            .command(["memcached", "-p", port.as_str(), "-m", mem_arg.as_str()])
            .tcp_port("memcached", spec.port)
            .memory_mb(mem + 32)
            .health_tcp(spec.port)
            .build();
        Ok(ResourcePlan {
            objects: vec![DesiredObject::Container(container)],
            diagnostics: Vec::new(),
        })
    }

    fn outputs(
        _host: &dyn Host,
        _spec: &ResourceSpec,
        realized: &Realized,
    ) -> Result<Vec<Output>, Error> {
        let ep = endpoint(realized, "memcached")?;
        Ok(vec![
            output("URL", format!("memcached://{}:{}", ep.host, ep.port)),
            output("HOST", ep.host.clone()),
            output("PORT", ep.port.to_string()),
        ])
    }
    // `data_op` keeps the default: export/import/console are unsupported.
}

dray_pdk::export_resource_plugin!(Memcached);

#[cfg(test)]
mod tests {
    use super::*;
    use dray_pdk::{kv, DataOpKind, Endpoint, FakeHost};

    fn spec(options: &[(&str, &str)]) -> ResourceSpec {
        ResourceSpec {
            app: "shop".into(),
            name: "sessions".into(),
            type_name: "memcached".into(),
            options: options.iter().map(|(k, v)| kv(*k, *v)).collect(),
            image: None,
            port: 11311,
        }
    }

    #[test]
    fn plans_a_container_on_the_allocated_port() {
        let host = FakeHost::new();
        let plan = Memcached::plan(&host, &spec(&[("mem", "128")]), &[]).unwrap();
        let DesiredObject::Container(c) = &plan.objects[0] else {
            panic!("expected a container")
        };
        assert_eq!(c.image, "memcached:1.6");
        assert_eq!(c.command, vec!["memcached", "-p", "11311", "-m", "128"]);
        assert_eq!(c.ports[0].number, 11311);
    }

    #[test]
    fn rejects_unknown_options() {
        let host = FakeHost::new();
        assert!(matches!(
            Memcached::plan(&host, &spec(&[("storage", "10")]), &[]),
            Err(Error::InvalidSpec(_))
        ));
    }

    #[test]
    fn links_a_memcached_url() {
        let host = FakeHost::new();
        let realized = Realized {
            endpoints: vec![Endpoint {
                name: "memcached".into(),
                host: "10.0.0.9".into(),
                port: 11311,
            }],
        };
        let out = Memcached::outputs(&host, &spec(&[]), &realized).unwrap();
        assert_eq!(out[0].value, "memcached://10.0.0.9:11311");
        assert!(Memcached::data_op(&host, &spec(&[]), &realized, DataOpKind::Export).is_err());
    }
}
