//! `dray ps`, `ps info`, `ps stop`, `dray scale`, `dray services`, `services restart`,
//! `dray restart`.

use clap::{Args, Subcommand};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only processes of this service.
    #[arg(long, short = 's')]
    service: Option<String>,
    #[command(subcommand)]
    command: Option<PsCommand>,
}

#[derive(Debug, Subcommand)]
enum PsCommand {
    /// Show a process.
    Info { pid: String },
    /// Stop a process (a service process is replaced by a new one).
    Stop { pid: String },
}

pub async fn ps(g: &Globals, args: PsArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    match args.command {
        None => {
            let procs = client.processes(&app, args.service.as_deref()).await?;
            if g.json {
                return output::json(&procs);
            }
            let rows: Vec<Vec<String>> = procs
                .into_iter()
                .map(|p| {
                    vec![
                        p.id,
                        p.service,
                        p.status.to_string(),
                        p.release,
                        output::ago(p.started),
                        p.command,
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &["ID", "SERVICE", "STATUS", "RELEASE", "STARTED", "COMMAND"],
                    &rows
                )
            );
        }
        Some(PsCommand::Info { pid }) => {
            let p = client.process(&app, &pid).await?;
            if g.json {
                return output::json(&p);
            }
            print!(
                "{}",
                output::info(&[
                    ("Id", p.id),
                    ("App", p.app),
                    ("Command", p.command),
                    ("Instance", p.instance),
                    ("Release", p.release),
                    ("Service", p.service),
                    ("Started", output::ago(p.started)),
                    ("Status", p.status.to_string()),
                    ("Ports", p.ports.join(", ")),
                    ("Restarts", p.restarts.to_string()),
                    (
                        "Exit code",
                        p.exit_code.map(|c| c.to_string()).unwrap_or_default()
                    ),
                ])
            );
        }
        Some(PsCommand::Stop { pid }) => {
            if !g.json {
                output::start(&format!("Stopping {pid}"));
            }
            client.process_stop(&app, &pid).await?;
            if g.json {
                return output::json(&serde_json::json!({ "status": "ok" }));
            }
            output::ok();
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The service to scale (omit to list every service's scale).
    service: Option<String>,
    /// Number of processes.
    #[arg(long)]
    count: Option<u32>,
    /// CPU request in millicores (1000 = one core).
    #[arg(long)]
    cpu: Option<u64>,
    /// Memory limit in MB.
    #[arg(long)]
    memory: Option<u64>,
}

pub async fn scale(g: &Globals, args: ScaleArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    match args.service {
        None => {
            if args.count.is_some() || args.cpu.is_some() || args.memory.is_some() {
                anyhow::bail!("which service? dray scale SERVICE --count N");
            }
            let services = client.services(&app).await?;
            if g.json {
                return output::json(&services);
            }
            let rows: Vec<Vec<String>> = services
                .into_iter()
                .map(|s| {
                    vec![
                        s.name,
                        s.count.to_string(),
                        s.running.to_string(),
                        s.cpu.to_string(),
                        s.memory.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["SERVICE", "DESIRED", "RUNNING", "CPU", "MEMORY"], &rows)
            );
        }
        Some(service) => {
            if args.count.is_none() && args.cpu.is_none() && args.memory.is_none() {
                anyhow::bail!("nothing to change: pass --count, --cpu or --memory");
            }
            if !g.json {
                output::start(&format!("Scaling {service}"));
            }
            let s = client
                .scale(&app, &service, args.count, args.cpu, args.memory)
                .await?;
            if g.json {
                return output::json(&s);
            }
            output::ok();
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(subcommand)]
    command: Option<ServicesCommand>,
}

#[derive(Debug, Subcommand)]
enum ServicesCommand {
    /// Replace every process of a service.
    Restart { service: String },
}

pub async fn services(g: &Globals, args: ServicesArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    match args.command {
        None => {
            let services = client.services(&app).await?;
            if g.json {
                return output::json(&services);
            }
            let rows: Vec<Vec<String>> = services
                .into_iter()
                .map(|s| {
                    let ports = s
                        .ports
                        .iter()
                        .map(|p| {
                            if p.balancer == 0 {
                                p.container.to_string()
                            } else {
                                format!("{}:{}", p.balancer, p.container)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    vec![s.name, s.domain, ports]
                })
                .collect();
            print!("{}", output::table(&["SERVICE", "DOMAIN", "PORTS"], &rows));
        }
        Some(ServicesCommand::Restart { service }) => {
            if !g.json {
                output::start(&format!("Restarting {service}"));
            }
            client.restart(&app, Some(&service)).await?;
            if g.json {
                return output::json(&serde_json::json!({ "status": "ok" }));
            }
            output::ok();
        }
    }
    Ok(())
}

pub async fn restart(g: &Globals) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    if !g.json {
        output::start(&format!("Restarting {app}"));
    }
    client.restart(&app, None).await?;
    if g.json {
        return output::json(&serde_json::json!({ "status": "ok" }));
    }
    output::ok();
    Ok(())
}
