//! `dray rack`

use super::Globals;
use crate::output;

pub async fn rack(g: &Globals) -> anyhow::Result<()> {
    let client = g.client()?;
    let s = client.system().await?;
    if g.json {
        return output::json(&s);
    }
    print!(
        "{}",
        output::info(&[
            ("Name", s.name),
            ("Provider", s.provider),
            ("Router", s.domain),
            ("Status", s.status),
            ("Version", s.version),
            ("URL", client.url()),
        ])
    );
    Ok(())
}
