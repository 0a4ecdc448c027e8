//! `dray`: the command-line client for a Dray rack.
//!
//! Commands, flags and output follow `convox` so its users feel at home. This binary owns
//! argument parsing, rack/app selection and formatting; everything it knows about the rack
//! comes through `dray_sdk::Client`. It must never reach into the agent's internals.

mod commands;
mod output;
mod rack;

use clap::{CommandFactory, Parser, Subcommand};

/// Global options.
#[derive(Debug, Parser)]
#[command(
    name = "dray",
    version,
    about = "Manage apps on a Dray rack (convox-compatible commands)"
)]
pub struct Cli {
    /// Rack URL (http://host:5443, with the token as password if you like) or a saved rack.
    #[arg(
        long,
        short = 'r',
        global = true,
        env = "DRAY_HOST",
        value_name = "RACK"
    )]
    pub rack: Option<String>,
    /// App name [default: .dray/app, .convox/app, or the current directory's name].
    #[arg(long, short = 'a', global = true, env = "DRAY_APP", value_name = "APP")]
    pub app: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, create and manage apps.
    Apps(commands::apps::AppsArgs),
    /// List, create and inspect builds.
    Builds(commands::builds::BuildsArgs),
    /// Read and change an app's environment (each change makes a release).
    Env(commands::env::EnvArgs),
    /// List and inspect releases.
    Releases(commands::releases::ReleasesArgs),
    /// List an app's processes.
    Ps(commands::processes::PsArgs),
    /// Show or change the scale of an app's services.
    Scale(commands::processes::ScaleArgs),
    /// List an app's services.
    Services(commands::processes::ServicesArgs),
    /// Replace every process of an app.
    Restart,
    /// Run a one-off process of a service (attached, or in the background with -d).
    Run(commands::run::RunArgs),
    /// Run a command inside a running process.
    Exec(commands::run::ExecArgs),
    /// Stream an app's logs.
    Logs(commands::logs::LogsArgs),
    /// List and import images.
    Images(commands::images::ImagesArgs),
    /// List, install, upgrade and remove the rack's WebAssembly plugins.
    Plugins(commands::plugins::PluginsArgs),
    /// An app's resources (databases, caches): list, info, url, plan, export, import, console.
    Resources(commands::resources::ResourcesArgs),
    /// Show the rack.
    Rack,
    /// Save a rack's URL and token and make it current.
    Login(commands::login::LoginArgs),
    /// List saved racks.
    Racks,
    /// Make a saved rack the current one.
    Switch {
        /// URL or unique part of a saved rack's URL.
        rack: String,
    },
    /// Check a convox.yml and print it normalized (or its errors).
    Manifest(commands::manifest::ManifestArgs),
    /// Query the rack API directly.
    Api {
        #[command(subcommand)]
        command: commands::api::ApiCommand,
    },
    /// Print a shell completion script.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        // A pending "Doing x... " line gets its error on the same screen line.
        let msg = format!("{e:#}");
        eprintln!("ERROR: {}", msg.replace('\n', " "));
        std::process::exit(1);
    }
}

/// Leave with a remote command's exit code (after stdout is flushed).
fn exit_with(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = commands::Globals {
        rack: cli.rack.clone(),
        app: cli.app.clone(),
        json: cli.json,
    };
    match cli.command {
        Command::Apps(a) => commands::apps::run(&g, a).await,
        Command::Builds(a) => commands::builds::run(&g, a).await,
        Command::Env(a) => commands::env::run(&g, a).await,
        Command::Releases(a) => commands::releases::run(&g, a).await,
        Command::Ps(a) => commands::processes::ps(&g, a).await,
        Command::Scale(a) => commands::processes::scale(&g, a).await,
        Command::Services(a) => commands::processes::services(&g, a).await,
        Command::Restart => commands::processes::restart(&g).await,
        Command::Logs(a) => commands::logs::run(&g, a).await,
        Command::Run(a) => exit_with(commands::run::run(&g, a).await?),
        Command::Exec(a) => exit_with(commands::run::exec(&g, a).await?),
        Command::Images(a) => commands::images::run(&g, a).await,
        Command::Plugins(a) => commands::plugins::run(&g, a).await,
        Command::Resources(a) => exit_with(commands::resources::run(&g, a).await?),
        Command::Rack => commands::system::rack(&g).await,
        Command::Login(a) => commands::login::login(&g, a).await,
        Command::Racks => commands::login::racks(&g),
        Command::Switch { rack } => commands::login::switch(&rack),
        Command::Manifest(a) => commands::manifest::run(&g, a),
        Command::Api { command } => commands::api::run(&g, command).await,
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dray", &mut std::io::stdout());
            Ok(())
        }
    }
}
