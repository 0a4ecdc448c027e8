//! `dray releases`, `releases info`, `releases manifest`.

use clap::{Args, Subcommand};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReleasesArgs {
    /// Show at most this many releases.
    #[arg(long, short = 'l', default_value_t = 10)]
    limit: u32,
    #[command(subcommand)]
    command: Option<ReleasesCommand>,
}

#[derive(Debug, Subcommand)]
enum ReleasesCommand {
    /// Show a release.
    Info { release: String },
    /// Print a release's convox.yml.
    Manifest { release: String },
    /// Deploy a release (default: the newest) and wait until it is active.
    Promote {
        release: Option<String>,
        /// Promote even while another deployment is in progress, and do not wait.
        #[arg(long)]
        force: bool,
        /// Seconds before an unhealthy deployment is rolled back.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Copy an old release forward (build and env) as a new release and promote it.
    Rollback {
        release: String,
        /// Do not wait for the deployment.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(g: &Globals, args: ReleasesArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    match args.command {
        None => {
            let active = client.app(&app).await?.release;
            let releases = client.releases(&app, Some(args.limit)).await?;
            if g.json {
                return output::json(&releases);
            }
            let rows: Vec<Vec<String>> = releases
                .into_iter()
                .map(|r| {
                    let status = if r.id == active { "active" } else { "" };
                    vec![
                        r.id,
                        status.to_string(),
                        r.build,
                        output::ago(r.created),
                        r.description,
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"], &rows)
            );
        }
        Some(ReleasesCommand::Info { release }) => {
            let r = client.release(&app, &release).await?;
            if g.json {
                return output::json(&r);
            }
            print!(
                "{}",
                output::info(&[
                    ("Id", r.id),
                    ("Build", r.build),
                    (
                        "Created",
                        r.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    ("Description", r.description),
                    ("Env", r.env),
                ])
            );
        }
        Some(ReleasesCommand::Promote {
            release,
            force,
            timeout,
        }) => {
            let id = match release {
                Some(r) => r,
                None => client
                    .releases(&app, Some(1))
                    .await?
                    .into_iter()
                    .next()
                    .map(|r| r.id)
                    .ok_or_else(|| anyhow::anyhow!("app {app} has no releases to promote"))?,
            };
            promote(g, &client, &app, &id, force, timeout).await?;
        }
        Some(ReleasesCommand::Rollback { release, force }) => {
            let old = client.release(&app, &release).await?;
            if !g.json {
                output::start(&format!("Rolling back to {release}"));
            }
            let new = client
                .release_create(
                    &app,
                    &dray_sdk::ReleaseCreate {
                        build: Some(old.build.clone()),
                        env: Some(old.env.clone()),
                        description: Some(format!("rollback to {release}")),
                        parent_release: None,
                    },
                )
                .await?;
            if !g.json {
                output::ok();
            }
            promote(g, &client, &app, &new.id, force, None).await?;
        }
        Some(ReleasesCommand::Manifest { release }) => {
            let r = client.release(&app, &release).await?;
            if g.json {
                return output::json(&serde_json::json!({ "manifest": r.manifest }));
            }
            print!("{}", r.manifest);
            if !r.manifest.is_empty() && !r.manifest.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}

/// Promote a release and wait until the app is running it (or rolled back), showing the
/// rollout: on a terminal a progress line per service (on stderr), otherwise a plain line on
/// stderr each time a service's counts change; stdout keeps Convox's `Promoting R... OK`.
pub async fn promote(
    g: &Globals,
    client: &dray_sdk::Client,
    app: &str,
    id: &str,
    force: bool,
    timeout: Option<u64>,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let tty = !g.json && std::io::stderr().is_terminal();
    if !g.json && !tty {
        output::start(&format!("Promoting {id}"));
    }
    client.promote(app, id, force, timeout).await?;
    if force {
        if g.json {
            return output::json(&serde_json::json!({ "status": "promoting", "release": id }));
        }
        if tty {
            output::start(&format!("Promoting {id}"));
        }
        println!("OK (not waiting)");
        return Ok(());
    }
    let mut view = Progress::new(tty, id);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let a = client.app(app).await?;
        let mine: Vec<dray_sdk::ServiceProgress> = a
            .progress
            .iter()
            .filter(|p| p.release == id)
            .cloned()
            .collect();
        if a.deploying == id {
            view.show(&mine);
        }
        if a.status == dray_sdk::AppStatus::Running {
            view.finish(&mine);
            if a.release == id {
                if g.json {
                    return output::json(&a);
                }
                if tty {
                    output::start(&format!("Promoting {id}"));
                }
                output::ok();
                return Ok(());
            }
            let reason = if a.deploy_error.is_empty() {
                "see dray logs".to_string()
            } else {
                a.deploy_error
            };
            if tty {
                output::start(&format!("Promoting {id}"));
                println!("FAILED");
            } else if !g.json {
                println!();
            }
            anyhow::bail!("rollback: release {id} was not deployed: {reason}");
        }
    }
}

/// The rollout view of a promote.
struct Progress {
    /// Progress bars by service (a terminal), or the last line said per service (plain).
    bars: Option<(
        indicatif::MultiProgress,
        std::collections::BTreeMap<String, indicatif::ProgressBar>,
    )>,
    said: std::collections::BTreeMap<String, String>,
    release: String,
}

impl Progress {
    fn new(tty: bool, release: &str) -> Progress {
        Progress {
            bars: tty.then(|| (indicatif::MultiProgress::new(), Default::default())),
            said: Default::default(),
            release: release.to_string(),
        }
    }

    fn show(&mut self, progress: &[dray_sdk::ServiceProgress]) {
        for p in progress {
            let line = progress_line(p);
            match &mut self.bars {
                Some((multi, bars)) => {
                    let bar = bars.entry(p.service.clone()).or_insert_with(|| {
                        let b = multi.add(indicatif::ProgressBar::new(u64::from(p.desired.max(1))));
                        if let Ok(style) = indicatif::ProgressStyle::with_template(
                            "{spinner} {prefix:12} [{bar:20}] {msg}",
                        ) {
                            b.set_style(style.progress_chars("=> "));
                        }
                        b.set_prefix(p.service.clone());
                        b.enable_steady_tick(std::time::Duration::from_millis(120));
                        b
                    });
                    bar.set_length(u64::from(p.desired.max(1)));
                    bar.set_position(u64::from(p.healthy.min(p.desired)));
                    bar.set_message(format!("{} {}", self.release, line));
                }
                None => {
                    if self.said.get(&p.service) != Some(&line) {
                        eprintln!("{}: {line}", p.service);
                        self.said.insert(p.service.clone(), line);
                    }
                }
            }
        }
    }

    fn finish(&mut self, progress: &[dray_sdk::ServiceProgress]) {
        match self.bars.take() {
            Some((multi, bars)) => {
                for b in bars.values() {
                    b.finish_and_clear();
                }
                let _ = multi.clear();
            }
            None => self.show(progress),
        }
    }
}

/// `3/10 updated, 2 healthy, 8 old`.
fn progress_line(p: &dray_sdk::ServiceProgress) -> String {
    format!(
        "{}/{} updated, {} healthy, {} old",
        p.updated, p.desired, p.healthy, p.old
    )
}
