//! `dray login`, `dray racks`, `dray switch`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use clap::Args;

use super::Globals;
use crate::output;
use crate::rack::{normalize_url, SavedRack, Settings};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The rack's URL, e.g. http://127.0.0.1:5443.
    url: String,
    /// The rack's API token [default: DRAY_TOKEN, else asked for].
    #[arg(long, short = 't', env = "DRAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn login(g: &Globals, args: LoginArgs) -> anyhow::Result<()> {
    let url = normalize_url(&args.url);
    let token = match args.token.filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            if !std::io::stdin().is_terminal() {
                bail!("no token: pass --token TOKEN or set DRAY_TOKEN (drayd prints it on first start and keeps it in DATA_DIR/token)");
            }
            print!("Token: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let client = dray_sdk::Client::new(&url, Some(token.clone()))?;
    if !g.json {
        output::start(&format!("Authenticating with {url}"));
    }
    client.auth().await?;
    let mut settings = Settings::load()?;
    settings.racks.insert(url.clone(), SavedRack { token });
    settings.current = url.clone();
    settings.save().context("cannot save the login")?;
    if g.json {
        return output::json(&serde_json::json!({ "rack": url }));
    }
    output::ok();
    Ok(())
}

pub fn racks(g: &Globals) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    if g.json {
        let list: Vec<_> = settings
            .racks
            .keys()
            .map(|k| serde_json::json!({ "url": k, "current": *k == settings.current }))
            .collect();
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = settings
        .racks
        .keys()
        .map(|k| {
            let cur = if *k == settings.current { "*" } else { "" };
            vec![k.clone(), cur.to_string()]
        })
        .collect();
    print!("{}", output::table(&["RACK", "CURRENT"], &rows));
    Ok(())
}

pub fn switch(rack: &str) -> anyhow::Result<()> {
    let mut settings = Settings::load()?;
    let Some(url) = settings.find(rack)? else {
        bail!(
            "no saved rack matches {rack:?}: see `dray racks`, or `dray login URL --token TOKEN`"
        );
    };
    settings.current = url.clone();
    settings.save()?;
    println!("Switched to {url}");
    Ok(())
}
