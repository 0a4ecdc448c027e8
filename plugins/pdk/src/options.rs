//! Reading and checking the `options:` of a resource spec.
//!
//! Owns option parsing and schema validation; never touches the host.

use crate::builders::{error_diagnostic, invalid};
use crate::{Diagnostic, Error, OptionKind, ResourceSpec, ResourceType};

/// Typed access to a spec's `options:`.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    spec: &'a ResourceSpec,
}

impl<'a> Options<'a> {
    /// Wrap a spec's options.
    pub fn new(spec: &'a ResourceSpec) -> Self {
        Self { spec }
    }

    /// The raw value of `name`, if present (the last one wins).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.spec
            .options
            .iter()
            .rev()
            .find(|o| o.key == name)
            .map(|o| o.value.as_str())
    }

    /// The value of `name`, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    /// The value of `name` as a number, or `default`; `invalid-spec` if it is
    /// not a whole number.
    pub fn u32(&self, name: &str, default: u32) -> Result<u32, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                invalid(
                    Some(&format!("options.{name}")),
                    format!("{name} must be a whole number, got {v:?}"),
                )
            }),
        }
    }

    /// The value of `name` as a boolean, or `default`; `invalid-spec` if it
    /// is not `true`/`false`.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                invalid(
                    Some(&format!("options.{name}")),
                    format!("{name} must be true or false, got {v:?}"),
                )
            }),
        }
    }

    /// The value of a required option; `invalid-spec` if absent or empty.
    pub fn required(&self, name: &str) -> Result<&'a str, Error> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(invalid(
                Some(&format!("options.{name}")),
                format!("option {name} is required for type {}", self.spec.type_name),
            )),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Check a spec's options against a type's schema: unknown options,
/// missing required options, and values of integer/boolean options. Returns
/// every problem found (error diagnostics).
pub fn validate_options(spec: &ResourceSpec, ty: &ResourceType) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for o in &spec.options {
        let field = format!("options.{}", o.key);
        match ty.options.iter().find(|s| s.name == o.key) {
            None => {
                let known: Vec<&str> = ty.options.iter().map(|s| s.name.as_str()).collect();
                out.push(error_diagnostic(
                    Some(&field),
                    format!(
                        "unknown option {:?} for type {} (known: {})",
                        o.key,
                        ty.name,
                        known.join(", ")
                    ),
                ));
            }
            Some(schema) => match schema.kind {
                OptionKind::Integer if o.value.trim().parse::<u64>().is_err() => {
                    out.push(error_diagnostic(
                        Some(&field),
                        format!("{} must be a whole number, got {:?}", o.key, o.value),
                    ))
                }
                OptionKind::Boolean if parse_bool(&o.value).is_none() => {
                    out.push(error_diagnostic(
                        Some(&field),
                        format!("{} must be true or false, got {:?}", o.key, o.value),
                    ))
                }
                _ => {}
            },
        }
    }
    for s in ty.options.iter().filter(|s| s.required) {
        if !spec.options.iter().any(|o| o.key == s.name) {
            out.push(error_diagnostic(
                Some(&format!("options.{}", s.name)),
                format!("option {} is required for type {}", s.name, ty.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kv, OptionSchema};

    fn spec(options: &[(&str, &str)]) -> ResourceSpec {
        ResourceSpec {
            app: "app".into(),
            name: "db".into(),
            type_name: "t".into(),
            options: options.iter().map(|(k, v)| kv(*k, *v)).collect(),
            image: None,
            port: 5000,
        }
    }

    fn ty() -> ResourceType {
        let opt = |name: &str, kind, required| OptionSchema {
            name: name.into(),
            description: String::new(),
            kind,
            required,
            default_value: None,
        };
        ResourceType {
            name: "t".into(),
            description: String::new(),
            options: vec![
                opt("size", OptionKind::Integer, false),
                opt("flag", OptionKind::Boolean, false),
                opt("class", OptionKind::Text, true),
            ],
        }
    }

    #[test]
    fn schema_checks() {
        let d = validate_options(
            &spec(&[("size", "x"), ("flag", "maybe"), ("bogus", "1")]),
            &ty(),
        );
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(validate_options(&spec(&[("size", "3"), ("class", "c")]), &ty()).is_empty());
    }

    #[test]
    fn typed_access() {
        let s = spec(&[("size", "3"), ("flag", "yes")]);
        let o = Options::new(&s);
        assert_eq!(o.u32("size", 1).unwrap(), 3);
        assert_eq!(o.u32("missing", 7).unwrap(), 7);
        assert!(o.bool("flag", false).unwrap());
        assert!(o.required("class").is_err());
        assert_eq!(o.string("class", "d"), "d");
    }
}
