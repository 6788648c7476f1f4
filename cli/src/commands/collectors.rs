//! `roster collectors list` and `roster collectors forget`.

use serde_json::json;

use super::Globals;
use crate::{args::CollectorsCommand, output};

pub(super) async fn run(globals: &Globals, command: CollectorsCommand) -> anyhow::Result<()> {
    match command {
        CollectorsCommand::List => {
            let collectors = globals.client().list_collectors().await?.collectors;
            let value = json!({"collectors": collectors.iter().map(output::collector_json).collect::<Vec<_>>()});
            output::print(globals.format, &value, || output::collectors_text(&collectors));
        }
        CollectorsCommand::Forget { id } => {
            let reply = globals.client().forget_collector(id.to_string()).await?;
            let value = json!({"id": id.to_string(), "existed": reply.existed});
            output::print(globals.format, &value, || {
                if reply.existed { format!("forgot {id}") } else { format!("{id} was not known (nothing to do)") }
            });
        }
    }
    Ok(())
}
