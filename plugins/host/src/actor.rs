//! One plugin's long-lived instance and the thread that serves its calls.
//!
//! Each installed plugin gets an [`Actor`] on its own OS thread: calls arrive
//! in order over a channel and run on one long-lived wasmtime instance, with
//! the epoch deadline (and fuel, if configured) reset per call. A trap, a
//! timeout or a memory-limit hit drops the instance; the next call
//! re-instantiates it from the cached `InstancePre`. A plugin stuck in a loop
//! therefore blocks only its own thread until its deadline, never the agent's
//! async runtime or another plugin.
//!
//! This module owns instance lifecycle and failure classification. It must
//! never hand wasmtime types to callers, and never retry a failed call (the
//! caller decides).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use wasmtime::{Engine, Store, Trap};

use crate::bindings::balancer::{BalancerPlugin as BalancerWorld, BalancerPluginPre};
use crate::bindings::resource::{ResourcePlugin as ResourceWorld, ResourcePluginPre};
use crate::runtime::{Grants, Limits, StoreData};
use crate::state::PluginState;
use crate::{CallError, PluginStatus};

/// What every actor shares with the host.
pub(crate) struct Env {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) state: Arc<dyn PluginState>,
}

/// A pre-linked component, ready to instantiate quickly.
#[derive(Clone)]
pub(crate) enum Pre {
    Resource(ResourcePluginPre<StoreData>),
    Balancer(BalancerPluginPre<StoreData>),
}

/// A live instance's typed exports.
pub(crate) enum Live {
    Resource(ResourceWorld),
    Balancer(BalancerWorld),
}

struct Instance {
    store: Store<StoreData>,
    live: Live,
}

/// Health counters of one plugin, shared with `list()`.
#[derive(Default)]
pub(crate) struct Health {
    pub(crate) status: Mutex<PluginStatus>,
    pub(crate) restarts: AtomicU32,
    pub(crate) calls: AtomicU64,
}

/// A unit of work for an actor.
pub(crate) type Job = Box<dyn FnOnce(&mut Actor) + Send>;

/// The owner of one plugin's instance.
pub(crate) struct Actor {
    name: String,
    grants: Grants,
    pre: Pre,
    env: Arc<Env>,
    instance: Option<Instance>,
    health: Arc<Health>,
}

impl Actor {
    /// An actor with no instance yet. `name` is empty while installing (the
    /// plugin's state is then unavailable).
    pub(crate) fn new(
        name: &str,
        grants: Grants,
        pre: Pre,
        env: Arc<Env>,
        health: Arc<Health>,
    ) -> Self {
        Self {
            name: name.to_string(),
            grants,
            pre,
            env,
            instance: None,
            health,
        }
    }

    /// Run the actor on its own thread; it stops when every sender is gone.
    pub(crate) fn spawn(mut self) -> std::io::Result<mpsc::Sender<Job>> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("plugin-{}", self.name))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut self);
                }
                tracing::debug!(plugin = %self.name, "plugin actor stopped");
            })?;
        Ok(tx)
    }

    fn label(&self) -> String {
        if self.name.is_empty() {
            "(installing)".to_string()
        } else {
            self.name.clone()
        }
    }

    fn instantiate(&mut self) -> Result<(), CallError> {
        if self.instance.is_some() {
            return Ok(());
        }
        let data = StoreData::new(
            &self.name,
            &self.grants,
            &self.env.limits,
            self.env.state.clone(),
        )
        .map_err(|e| CallError::Unavailable {
            plugin: self.label(),
            reason: format!("cannot set up the sandbox: {e:#}"),
        })?;
        let mut store = Store::new(&self.env.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.env.limits.deadline_ticks());
        if let Some(fuel) = self.env.limits.fuel {
            store.set_fuel(fuel).map_err(|e| CallError::Unavailable {
                plugin: self.label(),
                reason: e.to_string(),
            })?;
        }
        let live = match &self.pre {
            Pre::Resource(pre) => pre.instantiate(&mut store).map(Live::Resource),
            Pre::Balancer(pre) => pre.instantiate(&mut store).map(Live::Balancer),
        };
        match live {
            Ok(live) => {
                self.instance = Some(Instance { store, live });
                Ok(())
            }
            Err(e) => Err(self.fail(e, &store, "instantiation")),
        }
    }

    /// Classify a failure, record it, and drop the instance.
    fn fail(&mut self, e: wasmtime::Error, store: &Store<StoreData>, during: &str) -> CallError {
        let plugin = self.label();
        let limits = &self.env.limits;
        let output = store.data().stderr.last_lines(2);
        store.data().stderr.clear();
        let err = if let Some(requested) = store.data().limiter.exceeded {
            CallError::OutOfMemory {
                plugin,
                limit: limits.memory_bytes,
                requested,
            }
        } else {
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => CallError::Timeout {
                    plugin,
                    timeout: limits.call_timeout,
                },
                Some(Trap::OutOfFuel) => CallError::OutOfFuel {
                    plugin,
                    fuel: limits.fuel.unwrap_or_default(),
                },
                Some(trap) => CallError::Trap {
                    plugin,
                    reason: with_output(format!("{trap} during {during}"), output),
                },
                None => CallError::Trap {
                    plugin,
                    reason: with_output(format!("{} during {during}", e.root_cause()), output),
                },
            }
        };
        tracing::warn!(plugin = %self.label(), error = %err, "plugin instance dropped");
        self.health.restarts.fetch_add(1, Ordering::Relaxed);
        *self.health.status.lock().expect("status lock") = PluginStatus::Failed(err.to_string());
        err
    }

    /// Run `f` on the live instance with a fresh deadline. On failure the
    /// instance is dropped and the error classified.
    pub(crate) fn call<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Store<StoreData>, &Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.instantiate()?;
        self.health.calls.fetch_add(1, Ordering::Relaxed);
        let Some(mut instance) = self.instance.take() else {
            unreachable!("instantiated above");
        };
        instance
            .store
            .set_epoch_deadline(self.env.limits.deadline_ticks());
        if let Some(fuel) = self.env.limits.fuel {
            let _ = instance.store.set_fuel(fuel);
        }
        match f(&mut instance.store, &instance.live) {
            Ok(r) => {
                self.instance = Some(instance);
                let mut status = self.health.status.lock().expect("status lock");
                if *status != PluginStatus::Ok {
                    *status = PluginStatus::Ok;
                }
                Ok(r)
            }
            Err(e) => Err(self.fail(e, &instance.store, what)),
        }
    }

    /// Like [`Actor::call`] for resource plugins.
    pub(crate) fn resource<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Store<StoreData>, &ResourceWorld) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let plugin = self.label();
        self.call(what, |store, live| match live {
            Live::Resource(r) => f(store, r),
            Live::Balancer(_) => Err(wasmtime::format_err!("{plugin} is not a resource plugin")),
        })
    }

    /// Like [`Actor::call`] for balancer plugins.
    pub(crate) fn balancer<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Store<StoreData>, &BalancerWorld) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let plugin = self.label();
        self.call(what, |store, live| match live {
            Live::Balancer(b) => f(store, b),
            Live::Resource(_) => Err(wasmtime::format_err!("{plugin} is not a balancer plugin")),
        })
    }

    /// `describe`, whatever the world.
    pub(crate) fn describe(&mut self) -> Result<crate::types::PluginDescription, CallError> {
        self.call("describe", |store, live| match live {
            Live::Resource(r) => r.dray_plugin_resource_provider().call_describe(store),
            Live::Balancer(b) => b.dray_plugin_balancer().call_describe(store),
        })
    }

    /// Drop the instance (the next call re-instantiates).
    #[allow(dead_code)]
    pub(crate) fn recycle(&mut self) {
        self.instance = None;
    }
}

fn with_output(reason: String, output: Option<String>) -> String {
    match output {
        Some(out) => format!("{reason} (plugin output: {out})"),
        None => reason,
    }
}
