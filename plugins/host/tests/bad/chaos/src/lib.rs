//! A deliberately misbehaving resource plugin (type `chaos`) for the host's
//! tests. `options.mode` selects the behaviour of `plan`:
//! `trap` panics, `loop` never returns, `alloc` allocates without bound,
//! `malformed` returns a plan the host must refuse, `count` increments a
//! counter kept in plugin state, `secret` returns a fresh random secret.
//! Never install this outside tests.

use dray_pdk::{
    kv, ContainerBuilder, DesiredObject, Error, Host, ObservedObject, OptionKind, OptionSchema,
    Options, Output, PluginDescription, Realized, ResourcePlan, ResourcePlugin, ResourceSpec,
    ResourceType,
};

/// The plugin.
pub struct Chaos;

fn plan_with(env: Vec<(String, String)>) -> ResourcePlan {
    let mut b = ContainerBuilder::new("chaos", "busybox:1").tcp_port("p", 1000);
    for (k, v) in env {
        b = b.env(k, v);
    }
    ResourcePlan {
        objects: vec![DesiredObject::Container(b.build())],
        diagnostics: vec![],
    }
}

impl ResourcePlugin for Chaos {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "chaos".into(),
            version: "0.0.1".into(),
            summary: "misbehaves on purpose (tests only)".into(),
            types: vec![ResourceType {
                name: "chaos".into(),
                description: "tests only".into(),
                options: vec![OptionSchema {
                    name: "mode".into(),
                    description: "what to do wrong".into(),
                    kind: OptionKind::Text,
                    required: false,
                    default_value: None,
                }],
            }],
        }
    }

    fn plan(
        host: &dyn Host,
        spec: &ResourceSpec,
        _observed: &[ObservedObject],
    ) -> Result<ResourcePlan, Error> {
        match Options::new(spec).get("mode").unwrap_or("") {
            "trap" => panic!("chaos: deliberate panic"),
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "malformed" => Ok(ResourcePlan {
                objects: vec![DesiredObject::Container(
                    ContainerBuilder::new("chaos", "").tcp_port("p", 0).build(),
                )],
                diagnostics: vec![],
            }),
            "count" => {
                let n: u64 = host
                    .state_get("count")
                    .map_err(|e| Error::Other(format!("{e:?}")))?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
                    + 1;
                host.state_set("count", &n.to_string())
                    .map_err(|e| Error::Other(format!("{e:?}")))?;
                Ok(plan_with(vec![("COUNT".into(), n.to_string())]))
            }
            "secret" => Ok(plan_with(vec![("SECRET".into(), host.random_secret(32))])),
            _ => Ok(plan_with(vec![])),
        }
    }

    fn outputs(
        _host: &dyn Host,
        _spec: &ResourceSpec,
        _realized: &Realized,
    ) -> Result<Vec<Output>, Error> {
        Ok(vec![Output {
            key: "URL".into(),
            value: kv("a", "b").value,
            secret: false,
        }])
    }
}

dray_pdk::export_resource_plugin!(Chaos);
