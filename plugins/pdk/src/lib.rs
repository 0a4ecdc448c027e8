//! # dray-pdk: the Dray plugin development kit
//!
//! Everything a plugin author needs to write a Dray plugin in Rust:
//!
//! * the bindings of the WIT contract in `wit/` (`package dray:plugin@0.1.0`),
//!   generated with `wit-bindgen` for both worlds (`resource-plugin` and
//!   `balancer-plugin`), re-exported as plain Rust types ([`ResourceSpec`],
//!   [`ResourcePlan`], [`ContainerSpec`], ...);
//! * a [`Host`] trait over the agent's `host` interface, implemented by
//!   [`WasmHost`] (the real imports, inside the agent) and by [`FakeHost`]
//!   (in-memory state, deterministic secrets) so a plugin's logic runs as a
//!   normal native unit test;
//! * the [`ResourcePlugin`] and [`BalancerPlugin`] traits and the
//!   [`export_resource_plugin!`] / [`export_balancer_plugin!`] macros that
//!   turn an implementation into a component;
//! * helpers: [`ContainerBuilder`], option parsing ([`Options`]), credential
//!   handling ([`Host::secret_once`]), diagnostics and endpoint lookup.
//!
//! This crate owns only guest-side code. It must never depend on wasmtime or
//! anything of the agent: plugins link it into a `wasm32-wasip2` component.
//! The wasm glue only exists on `target_arch = "wasm32"`; on native targets
//! the crate compiles so plugin logic can be unit-tested with [`FakeHost`].
//!
//! See `plugins/README.md` ("Writing a plugin") for a walkthrough.

#![warn(missing_docs)]

mod builders;
mod fake;
mod host;
mod options;

/// The raw `wit-bindgen` bindings. Plugin code rarely needs these directly:
/// the types are re-exported at the crate root and the export macros wire
/// the traits.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    /// Bindings of the `resource-plugin` world (also the home of the shared
    /// `types` and `host` interfaces).
    pub mod resource {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "resource-plugin",
            pub_export_macro: true,
            export_macro_name: "__dray_export_resource_world",
            default_bindings_module: "::dray_pdk::bindings::resource",
            additional_derives: [PartialEq, Eq],
        });
    }

    /// Bindings of the `balancer-plugin` world. Shares `types` and `host`
    /// with [`resource`].
    pub mod balancer {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "balancer-plugin",
            pub_export_macro: true,
            export_macro_name: "__dray_export_balancer_world",
            default_bindings_module: "::dray_pdk::bindings::balancer",
            additional_derives: [PartialEq, Eq],
            with: {
                "dray:plugin/types@0.1.0": crate::bindings::resource::dray::plugin::types,
                "dray:plugin/host@0.1.0": crate::bindings::resource::dray::plugin::host,
            },
        });
    }
}

pub use bindings::balancer::exports::dray::plugin::balancer::{
    Backend, BalancerConfig, Connection,
};
pub use bindings::resource::dray::plugin::host::StateError;
pub use bindings::resource::dray::plugin::types::{
    CloudDatabaseSpec, ContainerSpec, DataCommand, DataOpKind, DesiredObject, Diagnostic, Endpoint,
    Error, HealthCheck, HttpProbe, KeyValue, LogLevel, ObjectState, ObservedObject, OptionKind,
    OptionSchema, Output, PluginDescription, Port, Probe, Protocol, Realized, ResourcePlan,
    ResourceSpec, ResourceType, Severity, Volume,
};

pub use builders::{
    endpoint, error_diagnostic, invalid, kv, not_ready, other, output, secret_output, unsupported,
    warning_diagnostic, ContainerBuilder,
};
pub use fake::FakeHost;
pub use host::{Host, WasmHost};
pub use options::{validate_options, Options};

/// The version of the WIT contract these bindings were generated from.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The logic of a resource plugin: turn a [`ResourceSpec`] into a [`ResourcePlan`],
/// link outputs and name data operations.
///
/// Every method receives the [`Host`] explicitly, so the same code runs
/// inside the agent ([`WasmHost`]) and in unit tests ([`FakeHost`]). Keep
/// methods pure apart from plugin state: the agent may call them at any time,
/// any number of times.
pub trait ResourcePlugin {
    /// Name, version and the resource types served, with their options.
    fn describe() -> PluginDescription;

    /// Check a spec. The default implementation checks the options against
    /// the schema returned by [`ResourcePlugin::describe`] (unknown options,
    /// missing required ones, integers and booleans) and the type name.
    fn validate(host: &dyn Host, spec: &ResourceSpec) -> Result<Vec<Diagnostic>, Error> {
        let _ = host;
        let description = Self::describe();
        let Some(ty) = description.types.iter().find(|t| t.name == spec.type_name) else {
            return Err(invalid(
                Some("type"),
                format!(
                    "plugin {} does not serve resource type {:?}",
                    description.name, spec.type_name
                ),
            ));
        };
        let diagnostics = validate_options(spec, ty);
        if diagnostics.iter().any(|d| d.severity == Severity::Error) {
            Err(Error::InvalidSpec(diagnostics))
        } else {
            Ok(diagnostics)
        }
    }

    /// The desired objects for the resource, given what the agent observes.
    fn plan(
        host: &dyn Host,
        spec: &ResourceSpec,
        observed: &[ObservedObject],
    ) -> Result<ResourcePlan, Error>;

    /// The variables linked into services (`URL`, `USER`, `PASS`, `HOST`,
    /// `PORT`, `NAME`).
    fn outputs(
        host: &dyn Host,
        spec: &ResourceSpec,
        realized: &Realized,
    ) -> Result<Vec<Output>, Error>;

    /// How to export, import or open a console on the data. Defaults to
    /// `unsupported` for every operation.
    fn data_op(
        host: &dyn Host,
        spec: &ResourceSpec,
        realized: &Realized,
        op: DataOpKind,
    ) -> Result<DataCommand, Error> {
        let _ = (host, realized);
        Err(unsupported(format!(
            "resource type {} does not support {op:?}",
            spec.type_name
        )))
    }
}

/// The logic of a balancer plugin. One value of the implementing type lives
/// for the whole life of the plugin instance (created with `Default`), so it
/// can keep per-balancer configuration between calls.
pub trait BalancerPlugin: Default + 'static {
    /// Name and version (no resource types).
    fn describe() -> PluginDescription;

    /// (Re)configure for one balancer.
    fn configure(&mut self, host: &dyn Host, config: BalancerConfig) -> Result<(), Error>;

    /// Choose the backend for a new connection: the index into `backends`,
    /// or `None` to refuse the connection.
    fn pick(&mut self, conn: &Connection, backends: &[Backend]) -> Option<u32>;
}

/// Export a [`ResourcePlugin`] implementation as the component's
/// `resource-plugin` world. Use once, at the root of the plugin crate:
///
/// ```ignore
/// struct Memcached;
/// impl dray_pdk::ResourcePlugin for Memcached { /* ... */ }
/// dray_pdk::export_resource_plugin!(Memcached);
/// ```
///
/// Expands to nothing on native targets, so unit tests build normally.
#[macro_export]
macro_rules! export_resource_plugin {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __DrayResourceExport;

            impl $crate::bindings::resource::exports::dray::plugin::resource_provider::Guest
                for __DrayResourceExport
            {
                fn describe() -> $crate::PluginDescription {
                    <$ty as $crate::ResourcePlugin>::describe()
                }

                fn validate(
                    spec: $crate::ResourceSpec,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Diagnostic>, $crate::Error>
                {
                    <$ty as $crate::ResourcePlugin>::validate(&$crate::WasmHost, &spec)
                }

                fn plan(
                    spec: $crate::ResourceSpec,
                    observed: ::std::vec::Vec<$crate::ObservedObject>,
                ) -> ::core::result::Result<$crate::ResourcePlan, $crate::Error> {
                    <$ty as $crate::ResourcePlugin>::plan(&$crate::WasmHost, &spec, &observed)
                }

                fn outputs(
                    spec: $crate::ResourceSpec,
                    realized: $crate::Realized,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Output>, $crate::Error>
                {
                    <$ty as $crate::ResourcePlugin>::outputs(&$crate::WasmHost, &spec, &realized)
                }

                fn data_op(
                    spec: $crate::ResourceSpec,
                    realized: $crate::Realized,
                    op: $crate::DataOpKind,
                ) -> ::core::result::Result<$crate::DataCommand, $crate::Error> {
                    <$ty as $crate::ResourcePlugin>::data_op(
                        &$crate::WasmHost,
                        &spec,
                        &realized,
                        op,
                    )
                }
            }

            $crate::bindings::resource::__dray_export_resource_world!(
                __DrayResourceExport with_types_in $crate::bindings::resource
            );
        };
    };
}

/// Export a [`BalancerPlugin`] implementation as the component's
/// `balancer-plugin` world. Use once, at the root of the plugin crate.
/// Expands to nothing on native targets.
#[macro_export]
macro_rules! export_balancer_plugin {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __DrayBalancerExport;

            ::std::thread_local! {
                static __DRAY_BALANCER: ::core::cell::RefCell<$ty> =
                    ::core::cell::RefCell::new(<$ty as ::core::default::Default>::default());
            }

            impl $crate::bindings::balancer::exports::dray::plugin::balancer::Guest
                for __DrayBalancerExport
            {
                fn describe() -> $crate::PluginDescription {
                    <$ty as $crate::BalancerPlugin>::describe()
                }

                fn configure(
                    config: $crate::BalancerConfig,
                ) -> ::core::result::Result<(), $crate::Error> {
                    __DRAY_BALANCER.with(|b| {
                        <$ty as $crate::BalancerPlugin>::configure(
                            &mut *b.borrow_mut(),
                            &$crate::WasmHost,
                            config,
                        )
                    })
                }

                fn pick(
                    conn: $crate::Connection,
                    backends: ::std::vec::Vec<$crate::Backend>,
                ) -> ::core::option::Option<u32> {
                    __DRAY_BALANCER.with(|b| {
                        <$ty as $crate::BalancerPlugin>::pick(
                            &mut *b.borrow_mut(),
                            &conn,
                            &backends,
                        )
                    })
                }
            }

            $crate::bindings::balancer::__dray_export_balancer_world!(
                __DrayBalancerExport with_types_in $crate::bindings::balancer
            );
        };
    };
}
