//! Where logs live and how the agent writes its own platform events.
//!
//! Process output is written by `drayd` in logger mode, started by the containerd shim (see
//! `dray_logs`), never by this process. This module owns the directory layout:
//! `DATA_DIR/logs/<app>/<process id>/` per process and `DATA_DIR/logs/<app>/system/` for the
//! app's platform events (`system/dray/...` lines in `dray logs`).

use std::path::PathBuf;

use crate::config::Config;

/// The directory name of an app's platform events.
pub const SYSTEM_DIR: &str = "system";

/// An app's log directory.
pub fn app_dir(config: &Config, app: &str) -> PathBuf {
    config.data_dir.join("logs").join(app)
}

/// A process's log directory.
pub fn process_dir(config: &Config, app: &str, process: &str) -> PathBuf {
    app_dir(config, app).join(process)
}

/// Append a platform event to an app's system log (and the agent's own log). Never fails the
/// caller: a log write error is logged and dropped.
pub fn system(config: &Config, app: &str, message: &str) {
    tracing::info!(app, "{message}");
    let dir = app_dir(config, app).join(SYSTEM_DIR);
    if let Err(e) = dray_logs::append_system(&dir, message) {
        tracing::warn!(app, error = %e, "cannot write the app's system log");
    }
}
