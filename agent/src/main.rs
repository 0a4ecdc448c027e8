//! `drayd`: parse flags, start the agent, wait for SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use dray_agent::config::{Config, Flags};
use dray_agent::{logging, Agent};

#[tokio::main]
async fn main() {
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
