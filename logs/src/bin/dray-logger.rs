//! `dray-logger`: the containerd `binary://` logger on its own, exactly what `drayd` runs in logger
//! mode ([`dray_logs::logger_main`]). It exists for the crate's tests and benchmark and for manual
//! checks (`ctr run --log-uri 'binary:///path/dray-logger?dir=/tmp/logs'`); drayd points the shim at it when it
//! is installed next to drayd (it starts faster than drayd), else at drayd itself.
//! It must never do anything but run the logger.

fn main() {
    std::process::exit(dray_logs::logger_main());
}
