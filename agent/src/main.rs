//! `drayd`: parse flags, start the agent, wait for SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use dray_agent::config::{Config, Flags};
use dray_agent::{logging, Agent};

fn main() {
    // Started by the containerd shim as a process's `binary://` logger: no runtime, no flags.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if dray_logs::is_logger_invocation(&args) {
        std::process::exit(dray_logs::logger_main());
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drayd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(agent_main());
}

async fn agent_main() {
    if let Err(e) = run().await {
        eprintln!("drayd: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::load(Flags::parse())?;
    logging::init(config.log_format, &config.log_level);
    let agent = Agent::start(config.clone()).await?;
    if agent.generated_token() {
        println!(
            "Generated the API token (saved in {}):\n{}\nLog in with: dray login http://{} --token <token>",
            config.data_dir.join("token").display(),
            agent.token(),
            agent.addr()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r.context("cannot wait for SIGINT")?; }
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    agent.shutdown().await.context("the API server failed")?;
    Ok(())
}
