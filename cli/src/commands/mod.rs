//! One module per command group.

pub mod api;
pub mod apps;
pub mod builds;
pub mod env;
pub mod images;
pub mod login;
pub mod logs;
pub mod manifest;
pub mod plugins;
pub mod processes;
pub mod releases;
pub mod resources;
pub mod run;
pub mod system;

/// Options every command sees.
#[derive(Clone, Debug)]
pub struct Globals {
    pub rack: Option<String>,
    pub app: Option<String>,
    pub json: bool,
}

impl Globals {
    /// The client for the selected rack.
    pub fn client(&self) -> anyhow::Result<dray_sdk::Client> {
        crate::rack::client(self.rack.as_deref())
    }

    /// The selected app, with a positional `[app]` argument winning over `--app`.
    pub fn app(&self, positional: Option<&str>) -> anyhow::Result<String> {
        crate::rack::app(positional.or(self.app.as_deref()))
    }
}
