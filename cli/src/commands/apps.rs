//! `dray apps ...`

use clap::{Args, Subcommand};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(subcommand)]
    command: Option<AppsCommand>,
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app.
    Create {
        #[arg(value_name = "APP")]
        name: Option<String>,
    },
    /// Show an app.
    Info {
        #[arg(value_name = "APP")]
        name: Option<String>,
    },
    /// Delete an app with its builds and releases (refused while locked).
    Delete {
        #[arg(value_name = "APP")]
        name: String,
    },
    /// Turn on termination protection: the app cannot be deleted.
    Lock {
        #[arg(value_name = "APP")]
        name: Option<String>,
    },
    /// Turn off termination protection.
    Unlock {
        #[arg(value_name = "APP")]
        name: Option<String>,
    },
    /// Cancel the deployment in progress (it rolls back).
    Cancel {
        #[arg(value_name = "APP")]
        name: Option<String>,
    },
}

pub async fn run(g: &Globals, args: AppsArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match args.command {
        None => {
            let apps = client.apps().await?;
            if g.json {
                return output::json(&apps);
            }
            let rows: Vec<Vec<String>> = apps
                .into_iter()
                .map(|a| vec![a.name, a.status.to_string(), a.release])
                .collect();
            print!("{}", output::table(&["APP", "STATUS", "RELEASE"], &rows));
        }
        Some(AppsCommand::Create { name: app }) => {
            let app = g.app(app.as_deref())?;
            if !g.json {
                output::start(&format!("Creating {app}"));
            }
            let created = client.app_create(&app).await?;
            if g.json {
                return output::json(&created);
            }
            output::ok();
        }
        Some(AppsCommand::Info { name: app }) => {
            let app = client.app(&g.app(app.as_deref())?).await?;
            if g.json {
                return output::json(&app);
            }
            print!(
                "{}",
                output::info(&[
                    ("Name", app.name),
                    ("Status", app.status.to_string()),
                    ("Locked", app.locked.to_string()),
                    ("Release", app.release),
                    ("Router", app.router),
                ])
            );
        }
        Some(AppsCommand::Delete { name: app }) => {
            if !g.json {
                output::start(&format!("Deleting {app}"));
            }
            client.app_delete(&app).await?;
            if g.json {
                return output::json(&serde_json::json!({ "status": "ok" }));
            }
            output::ok();
        }
        Some(AppsCommand::Lock { name: app }) => lock(g, &client, app, true).await?,
        Some(AppsCommand::Unlock { name: app }) => lock(g, &client, app, false).await?,
        Some(AppsCommand::Cancel { name: app }) => {
            let app = g.app(app.as_deref())?;
            if !g.json {
                output::start(&format!("Cancelling deployment of {app}"));
            }
            client.app_cancel(&app).await?;
            if g.json {
                return output::json(&serde_json::json!({ "status": "ok" }));
            }
            output::ok();
        }
    }
    Ok(())
}

async fn lock(
    g: &Globals,
    client: &dray_sdk::Client,
    app: Option<String>,
    lock: bool,
) -> anyhow::Result<()> {
    let app = g.app(app.as_deref())?;
    if !g.json {
        let verb = if lock { "Locking" } else { "Unlocking" };
        output::start(&format!("{verb} {app}"));
    }
    let updated = client.app_lock(&app, lock).await?;
    if g.json {
        return output::json(&updated);
    }
    output::ok();
    Ok(())
}
