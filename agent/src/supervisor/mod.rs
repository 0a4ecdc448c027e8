//! The supervisor: keeps each app's processes converged on its active release and scale, the
//! way Nomad's alloc/task runners and the kubelet do.
//!
//! Building blocks so far: [`backoff`] (when to restart a crashed process) and [`ports`] (host
//! ports handed to processes as `PORT`). The supervisor decides what should run; only the
//! `dray-runtime` crate speaks containerd.

pub mod backoff;
pub mod ports;
