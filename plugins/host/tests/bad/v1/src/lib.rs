//! A plugin built for a future, incompatible contract (`dray:plugin@1.0.0`,
//! from a copy of the WIT in `wit/` with the version bumped). The host must
//! refuse it at install, naming both versions. Tests only.

wit_bindgen::generate!({ path: "wit", world: "resource-plugin" });

use dray::plugin::types::*;
use exports::dray::plugin::resource_provider::Guest;

struct Future;

impl Guest for Future {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "future".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            types: vec![],
        }
    }
    fn validate(_spec: ResourceSpec) -> Result<Vec<Diagnostic>, Error> {
        Ok(vec![])
    }
    fn plan(_spec: ResourceSpec, _observed: Vec<ObservedObject>) -> Result<ResourcePlan, Error> {
        Err(Error::Other("unreachable".into()))
    }
    fn outputs(_spec: ResourceSpec, _realized: Realized) -> Result<Vec<Output>, Error> {
        Ok(vec![])
    }
    fn data_op(
        _spec: ResourceSpec,
        _realized: Realized,
        _op: DataOpKind,
    ) -> Result<DataCommand, Error> {
        Err(Error::Other("unreachable".into()))
    }
}

export!(Future);
