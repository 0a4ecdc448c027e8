//! Wire types and a typed async client for the Dray agent's HTTP API.
//!
//! This crate owns the shapes that cross the wire between `drayd` and its clients (the `dray`
//! CLI, the end-to-end tests, anyone scripting a rack) and one [`Client`] that speaks the API.
//! The JSON shapes follow Convox's `pkg/structs` (field names are the JSON tags), so existing
//! Convox tooling reads them unchanged.
//!
//! It must never contain agent logic: no storage, no validation beyond what a client needs to
//! build a request.

mod client;
mod types;

pub use client::{Client, ClientError, ExecSocket, LogsOptions, ReleaseCreate};
pub use types::*;
