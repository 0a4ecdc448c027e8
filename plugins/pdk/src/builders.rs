//! Small constructors for plan objects, outputs, diagnostics and errors.
//!
//! Owns only pure value-building code; nothing here talks to the host.

use crate::{
    ContainerSpec, Diagnostic, Endpoint, Error, HealthCheck, HttpProbe, KeyValue, Output, Port,
    Probe, Protocol, Realized, Severity, Volume,
};

/// A [`KeyValue`] from anything string-like.
pub fn kv(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

/// A plain (non-secret) [`Output`].
pub fn output(key: impl Into<String>, value: impl Into<String>) -> Output {
    Output {
        key: key.into(),
        value: value.into(),
        secret: false,
    }
}

/// A secret [`Output`] (masked by the agent in listings).
pub fn secret_output(key: impl Into<String>, value: impl Into<String>) -> Output {
    Output {
        key: key.into(),
        value: value.into(),
        secret: true,
    }
}

/// An error-level [`Diagnostic`].
pub fn error_diagnostic(field: Option<&str>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// A warning-level [`Diagnostic`].
pub fn warning_diagnostic(field: Option<&str>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// `Error::InvalidSpec` with one error diagnostic.
pub fn invalid(field: Option<&str>, message: impl Into<String>) -> Error {
    Error::InvalidSpec(vec![error_diagnostic(field, message)])
}

/// `Error::Unsupported`.
pub fn unsupported(message: impl Into<String>) -> Error {
    Error::Unsupported(message.into())
}

/// `Error::NotReady`.
pub fn not_ready(message: impl Into<String>) -> Error {
    Error::NotReady(message.into())
}

/// `Error::Other`.
pub fn other(message: impl Into<String>) -> Error {
    Error::Other(message.into())
}

/// The endpoint of the realized object `name`, or `not-ready` if the agent
/// has not realized it yet.
pub fn endpoint<'a>(realized: &'a Realized, name: &str) -> Result<&'a Endpoint, Error> {
    realized
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| not_ready(format!("object {name:?} is not realized yet")))
}

/// Builds a [`ContainerSpec`] step by step.
///
/// ```
/// use dray_pdk::ContainerBuilder;
/// let c = ContainerBuilder::new("redis", "redis:7")
///     .command(["redis-server", "--port", "6379"])
///     .tcp_port("redis", 6379)
///     .volume("data", "/data", 1)
///     .health_tcp(6379)
///     .build();
/// assert_eq!(c.image, "redis:7");
/// ```
#[derive(Debug, Clone)]
pub struct ContainerBuilder {
    spec: ContainerSpec,
}

impl ContainerBuilder {
    /// A container `name` running `image`, with nothing else set.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            spec: ContainerSpec {
                name: name.into(),
                image: image.into(),
                entrypoint: None,
                command: Vec::new(),
                env: Vec::new(),
                ports: Vec::new(),
                volumes: Vec::new(),
                health: None,
                memory_mb: None,
                cpu_shares: None,
            },
        }
    }

    /// Replace the image's entrypoint.
    pub fn entrypoint<I, S>(mut self, entrypoint: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
    }

    /// Replace the image's command (arguments).
    pub fn command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// Append arguments to the command.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.command.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable (replacing an earlier value of the same
    /// name).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let value = value.into();
        match self.spec.env.iter_mut().find(|e| e.key == key) {
            Some(existing) => existing.value = value,
            None => self.spec.env.push(kv(key, value)),
        }
        self
    }

    /// Add a TCP port.
    pub fn tcp_port(mut self, name: impl Into<String>, number: u16) -> Self {
        self.spec.ports.push(Port {
            name: name.into(),
            number,
            protocol: Protocol::Tcp,
        });
        self
    }

    /// Add a UDP port.
    pub fn udp_port(mut self, name: impl Into<String>, number: u16) -> Self {
        self.spec.ports.push(Port {
            name: name.into(),
            number,
            protocol: Protocol::Udp,
        });
        self
    }

    /// Add a persistent volume mounted at `path`.
    pub fn volume(
        mut self,
        name: impl Into<String>,
        path: impl Into<String>,
        size_gb: u32,
    ) -> Self {
        self.spec.volumes.push(Volume {
            name: name.into(),
            path: path.into(),
            size_gb,
        });
        self
    }

    /// Set the health check (default timings: every 5 s, 3 s timeout, 5
    /// retries, 10 s start period; change them with [`Self::health_timing`]).
    pub fn health(mut self, probe: Probe) -> Self {
        self.spec.health = Some(HealthCheck {
            probe,
            interval_ms: 5_000,
            timeout_ms: 3_000,
            retries: 5,
            start_period_ms: 10_000,
        });
        self
    }

    /// Health check: run `command` in the container.
    pub fn health_exec<I, S>(self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.health(Probe::Exec(command.into_iter().map(Into::into).collect()))
    }

    /// Health check: connect to a TCP port.
    pub fn health_tcp(self, port: u16) -> Self {
        self.health(Probe::Tcp(port))
    }

    /// Health check: HTTP GET `path` on `port`.
    pub fn health_http(self, port: u16, path: impl Into<String>) -> Self {
        self.health(Probe::Http(HttpProbe {
            port,
            path: path.into(),
        }))
    }

    /// Change the timings of the health check set earlier (no-op without
    /// one).
    pub fn health_timing(
        mut self,
        interval_ms: u32,
        timeout_ms: u32,
        retries: u32,
        start_period_ms: u32,
    ) -> Self {
        if let Some(h) = &mut self.spec.health {
            h.interval_ms = interval_ms;
            h.timeout_ms = timeout_ms;
            h.retries = retries;
            h.start_period_ms = start_period_ms;
        }
        self
    }

    /// Set a memory limit in MB.
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.spec.memory_mb = Some(mb);
        self
    }

    /// Set CPU shares (1024 = one CPU).
    pub fn cpu_shares(mut self, shares: u32) -> Self {
        self.spec.cpu_shares = Some(shares);
        self
    }

    /// The finished [`ContainerSpec`].
    pub fn build(self) -> ContainerSpec {
        self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_everything() {
        let c = ContainerBuilder::new("pg", "postgres:16")
            .entrypoint(["docker-entrypoint.sh"])
            .command(["postgres"])
            .args(["-p", "5432"])
            .env("A", "1")
            .env("A", "2")
            .tcp_port("pg", 5432)
            .volume("data", "/var/lib/postgresql/data", 10)
            .health_exec(["pg_isready"])
            .health_timing(1, 2, 3, 4)
            .memory_mb(256)
            .cpu_shares(512)
            .build();
        assert_eq!(c.command, vec!["postgres", "-p", "5432"]);
        assert_eq!(c.env, vec![kv("A", "2")]);
        assert_eq!(c.ports[0].number, 5432);
        assert_eq!(c.health.as_ref().unwrap().retries, 3);
        assert_eq!(c.memory_mb, Some(256));
    }

    #[test]
    fn endpoint_lookup() {
        let r = Realized {
            endpoints: vec![Endpoint {
                name: "a".into(),
                host: "h".into(),
                port: 1,
            }],
        };
        assert_eq!(endpoint(&r, "a").unwrap().host, "h");
        assert!(matches!(endpoint(&r, "b"), Err(Error::NotReady(_))));
    }
}
