//! # The Dray balancer plugin
//!
//! Places each new TCP connection of a `balancers:` entry on a backend:
//! **weighted least connections** among healthy backends with a non-zero
//! weight. The backend with the smallest `(open_connections + 1) / weight`
//! wins; ties go to the higher weight, then the smaller id, then the earlier
//! position, so the choice is deterministic for a given input.
//!
//! Options (per balancer, through `configure`): `strategy` =
//! `least-connections` (default) or `round-robin` (rotates over the eligible
//! backends, ignoring weights).
//!
//! This crate only chooses; the agent owns the sockets and moves the bytes.
//! `pick` must stay allocation-free and fast: it runs once per connection.

use std::cmp::Ordering;
use std::collections::HashMap;

use dray_pdk::{
    invalid, Backend, BalancerConfig, BalancerPlugin, Connection, Error, Host, PluginDescription,
};

/// How a balancer chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Weighted least connections (the default).
    #[default]
    LeastConnections,
    /// Rotate over the eligible backends.
    RoundRobin,
}

/// The plugin: per-balancer strategies and round-robin cursors.
#[derive(Debug, Default)]
pub struct Balancer {
    /// app -> balancer name -> (strategy, round-robin cursor).
    balancers: HashMap<String, HashMap<String, (Strategy, u32)>>,
}

fn eligible(b: &Backend) -> bool {
    b.healthy && b.weight > 0
}

/// Compare two eligible backends for least connections: `Less` means `a` is
/// the better choice.
fn better(a: (usize, &Backend), b: (usize, &Backend)) -> Ordering {
    let (ia, a) = a;
    let (ib, b) = b;
    // (a.open + 1) / a.weight  vs  (b.open + 1) / b.weight, without division.
    let load_a = (u64::from(a.open_connections) + 1) * u64::from(b.weight);
    let load_b = (u64::from(b.open_connections) + 1) * u64::from(a.weight);
    load_a
        .cmp(&load_b)
        .then_with(|| b.weight.cmp(&a.weight))
        .then_with(|| a.id.cmp(&b.id))
        .then_with(|| ia.cmp(&ib))
}

/// Weighted least connections over `backends` (see the crate docs).
pub fn least_connections(backends: &[Backend]) -> Option<u32> {
    backends
        .iter()
        .enumerate()
        .filter(|(_, b)| eligible(b))
        .min_by(|a, b| better(*a, *b))
        .map(|(i, _)| i as u32)
}

impl BalancerPlugin for Balancer {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "balancer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "TCP balancer: weighted least connections among healthy backends".into(),
            types: Vec::new(),
        }
    }

    fn configure(&mut self, host: &dyn Host, config: BalancerConfig) -> Result<(), Error> {
        let mut strategy = Strategy::default();
        for option in &config.options {
            match (option.key.as_str(), option.value.as_str()) {
                ("strategy", "least-connections") => strategy = Strategy::LeastConnections,
                ("strategy", "round-robin") => strategy = Strategy::RoundRobin,
                ("strategy", other) => {
                    return Err(invalid(
                        Some("options.strategy"),
                        format!("unknown strategy {other:?} (least-connections, round-robin)"),
                    ))
                }
                (other, _) => {
                    return Err(invalid(
                        Some(&format!("options.{other}")),
                        format!("unknown balancer option {other:?} (known: strategy)"),
                    ))
                }
            }
        }
        host.info(&format!(
            "balancer {}/{} uses {strategy:?}",
            config.app, config.name
        ));
        self.balancers
            .entry(config.app)
            .or_default()
            .insert(config.name, (strategy, 0));
        Ok(())
    }

    fn pick(&mut self, conn: &Connection, backends: &[Backend]) -> Option<u32> {
        // Unconfigured balancers use the default strategy.
        let Some((Strategy::RoundRobin, cursor)) = self
            .balancers
            .get_mut(conn.app.as_str())
            .and_then(|m| m.get_mut(conn.balancer.as_str()))
        else {
            return least_connections(backends);
        };
        let count = backends.iter().filter(|b| eligible(b)).count() as u32;
        if count == 0 {
            return None;
        }
        let n = *cursor % count;
        *cursor = cursor.wrapping_add(1);
        backends
            .iter()
            .enumerate()
            .filter(|(_, b)| eligible(b))
            .nth(n as usize)
            .map(|(i, _)| i as u32)
    }
}

dray_pdk::export_balancer_plugin!(Balancer);

#[cfg(test)]
mod tests {
    use super::*;
    use dray_pdk::{kv, FakeHost};

    fn backend(id: &str, healthy: bool, weight: u32, open: u32) -> Backend {
        Backend {
            id: id.into(),
            address: "127.0.0.1".into(),
            port: 1000,
            healthy,
            weight,
            open_connections: open,
        }
    }

    fn conn() -> Connection {
        Connection {
            app: "shop".into(),
            balancer: "tcp".into(),
            client_address: "10.0.0.1".into(),
            client_port: 5555,
            listener_port: 9000,
        }
    }

    #[test]
    fn picks_least_connections_among_healthy() {
        let mut b = Balancer::default();
        let backends = [
            backend("a", true, 1, 5),
            backend("b", false, 1, 0),
            backend("c", true, 1, 2),
            backend("d", true, 0, 0),
        ];
        assert_eq!(b.pick(&conn(), &backends), Some(2));
    }

    #[test]
    fn weights_scale_capacity() {
        let mut b = Balancer::default();
        // a: (4+1)/3 = 1.67, c: (1+1)/1 = 2 -> a.
        let backends = [backend("a", true, 3, 4), backend("c", true, 1, 1)];
        assert_eq!(b.pick(&conn(), &backends), Some(0));
        // Simulate placing connections: the split follows the weights.
        let mut open = [0u32, 0];
        for _ in 0..400 {
            let backends = [
                backend("a", true, 3, open[0]),
                backend("c", true, 1, open[1]),
            ];
            let i = b.pick(&conn(), &backends).unwrap() as usize;
            open[i] += 1;
        }
        assert_eq!(open, [300, 100]);
    }

    #[test]
    fn deterministic_tie_break() {
        let mut b = Balancer::default();
        // Equal load: higher weight wins.
        let backends = [backend("x", true, 1, 1), backend("y", true, 2, 3)];
        assert_eq!(b.pick(&conn(), &backends), Some(1));
        // Equal load and weight: smaller id wins, whatever the order.
        let backends = [backend("z", true, 1, 0), backend("m", true, 1, 0)];
        assert_eq!(b.pick(&conn(), &backends), Some(1));
        let backends = [backend("m", true, 1, 0), backend("z", true, 1, 0)];
        assert_eq!(b.pick(&conn(), &backends), Some(0));
    }

    #[test]
    fn refuses_without_healthy_backends() {
        let mut b = Balancer::default();
        assert_eq!(b.pick(&conn(), &[]), None);
        assert_eq!(
            b.pick(
                &conn(),
                &[backend("a", false, 1, 0), backend("b", true, 0, 0)]
            ),
            None
        );
    }

    #[test]
    fn round_robin_and_configuration_errors() {
        let host = FakeHost::new();
        let mut b = Balancer::default();
        let config = |options| BalancerConfig {
            app: "shop".into(),
            name: "tcp".into(),
            options,
        };
        assert!(b
            .configure(&host, config(vec![kv("strategy", "random")]))
            .is_err());
        assert!(b
            .configure(&host, config(vec![kv("colour", "red")]))
            .is_err());
        b.configure(&host, config(vec![kv("strategy", "round-robin")]))
            .unwrap();
        let backends = [
            backend("a", true, 1, 9),
            backend("b", false, 1, 0),
            backend("c", true, 1, 0),
        ];
        let picks: Vec<_> = (0..4)
            .map(|_| b.pick(&conn(), &backends).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
        assert_eq!(host.logs().len(), 1);
    }
}
