//! Apps' derived data: what the agent works out from an app's records and shares between the
//! API, the node, the deployer and the resources reconciler.
//!
//! Today this is [`ReleaseCache`]: a release's manifest is parsed once (interpolated with the
//! release's env, as the node runs it) and the result is shared as an
//! `Arc<`[`ParsedRelease`]`>` with everything callers derive from it repeatedly (the router's
//! service, the declared resources). Releases are immutable, so nothing here is ever invalidated
//! but by an app's deletion ([`ReleaseCache::forget_app`]) or by eviction.
//!
//! This module must never write to the store, decide business rules (who may promote what: that
//! is [`crate::controllers`]), or hold a lock across a store read or a parse.

pub mod links;
pub mod release;

pub use links::{link_resources, links_state, LinkError};
pub use release::{release_manifest, Declared, ParsedRelease, ReleaseCache, DEFAULT_CAPACITY};
