//! Write the test image (busybox from Debian's busybox-static, as an OCI archive) for scripts:
//! `cargo run -p dray-tests --example busybox_image -- DIR` prints the archive's path.

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    println!("{}", dray_tests::busybox_archive(&dir).display());
}
