//! `roster assignment show`: a known collector and the producers assigned to it.

use serde_json::json;

use super::{Globals, known_collector};
use crate::{args::AssignmentCommand, output};

pub(super) async fn run(globals: &Globals, command: AssignmentCommand) -> anyhow::Result<()> {
    let AssignmentCommand::Show { collector } = command;
    let client = globals.client();
    let info = known_collector(&client, collector).await?;
    let producers = client.list_all_producers(collector.to_string()).await?;
    let value = json!({
        "collector": output::collector_json(&info),
        "producers": producers.iter().map(output::producer_json).collect::<Vec<_>>(),
    });
    output::print(globals.format, &value, || {
        format!("{}\n\n{}", output::collectors_text(std::slice::from_ref(&info)), output::producers_table(&producers))
    });
    Ok(())
}
