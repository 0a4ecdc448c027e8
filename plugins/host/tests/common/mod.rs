//! Test support: the bytes of the real plugins and of the deliberately bad ones under
//! `tests/bad/`, built by [`dray_plugins::testing::plugin_wasm`].

/// The bytes of a built plugin: `postgres`, `redis`, `balancer`, `memcached`, or a bad one:
/// `chaos`, `v1`.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = dray_plugins::testing::plugin_wasm(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
