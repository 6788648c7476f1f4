//! `roster producers …`: register, pin and unpin, deregister, list and show producers.

use std::time::Duration;

use anyhow::Context as _;
use roster::{
    client::RosterClient,
    domain::{CollectorId, ProducerId, ProducerKind, labels_from_flags},
    pb,
};
use serde_json::json;

use super::{Globals, known_collector};
use crate::{
    args::{ProducersCommand, RegisterArgs},
    output::{self, Format},
};

pub(super) async fn run(globals: &Globals, command: ProducersCommand) -> anyhow::Result<()> {
    let format = globals.format;
    match command {
        ProducersCommand::Register(args) => register(&globals.client(), format, args).await?,
        ProducersCommand::Pin { producer, collector } => {
            pin(&globals.client(), format, producer, Some(collector)).await?;
        }
        ProducersCommand::Unpin { producer } => pin(&globals.client(), format, producer, None).await?,
        ProducersCommand::Deregister { id } => {
            let reply = globals.client().deregister_producer(id.to_string()).await?;
            let value = json!({"id": id.to_string(), "existed": reply.existed});
            output::print(format, &value, || {
                if reply.existed {
                    format!("deregistered {id}")
                } else {
                    format!("{id} was not registered (nothing to do)")
                }
            });
        }
        ProducersCommand::List { collector } => {
            let client = globals.client();
            if let Some(collector) = collector {
                known_collector(&client, collector).await?;
            }
            let producers = client.list_all_producers(collector.map(|c| c.to_string()).unwrap_or_default()).await?;
            let value = json!({"producers": producers.iter().map(output::producer_json).collect::<Vec<_>>(), "count": producers.len()});
            output::print(format, &value, || {
                format!("{}\n{} producers", output::producers_table(&producers), producers.len())
            });
        }
        ProducersCommand::Show { id } => {
            let producer = globals.client().get_producer(id.to_string()).await?;
            output::print(format, &output::producer_json(&producer), || {
                output::producers_table(std::slice::from_ref(&producer)).to_string()
            });
        }
    }
    Ok(())
}

/// `roster producers register`: one `RegisterProducer` (a registration or a renewal).
async fn register(client: &RosterClient, format: Format, args: RegisterArgs) -> anyhow::Result<()> {
    let RegisterArgs { id, address, interval, label, pin, lease, kind, scheme, path, scrape_timeout } = args;
    if let Some(pin) = pin {
        anyhow::bail!(
            "--pin is no longer a registration flag (a registration replaced the whole record, so the pin was \
             lost at the producer's next renewal): pin with `roster producers pin {id} {pin}`, which keeps the \
             pin until `roster producers unpin {id}` and changes nothing else"
        );
    }
    let prometheus = match kind {
        ProducerKind::Prometheus => Some(pb::PrometheusTarget {
            scheme: scheme.unwrap_or_default(),
            metrics_path: path.unwrap_or_default(),
            scrape_timeout_ms: scrape_timeout.map(|t| ms(t, "--scrape-timeout")).transpose()?,
        }),
        // `Cli::check` refused --scheme, --path and --scrape-timeout for another kind.
        ProducerKind::Grpc => None,
    };
    let request = pb::RegisterProducerRequest {
        producer_id: id.to_string(),
        address,
        interval_ms: ms(interval, "--interval")?,
        labels: labels_from_flags("--label", label)?.to_map(),
        pinned_collector_id: String::new(),
        lease_ms: lease.map(|l| ms(l, "--lease")).transpose()?,
        kind: kind.to_pb() as i32,
        prometheus,
    };
    let reply = client.register_producer(request).await?;
    let producer = reply.producer.unwrap_or_default();
    let value = json!({"created": reply.created, "renew_interval_ms": reply.renew_interval_ms, "producer": output::producer_json(&producer)});
    output::print(format, &value, || {
        let verb = if reply.created { "registered" } else { "renewed" };
        format!(
            "{verb} {}; renew every {} ms\n\n{}",
            producer.id,
            reply.renew_interval_ms,
            output::producers_table(std::slice::from_ref(&producer))
        )
    });
    Ok(())
}

/// `roster producers pin` and `unpin` (an empty `collector`): one `SetProducerPin`, nothing else.
async fn pin(
    client: &RosterClient,
    format: Format,
    producer: ProducerId,
    collector: Option<CollectorId>,
) -> anyhow::Result<()> {
    let reply =
        client.set_producer_pin(producer.to_string(), collector.map(|c| c.to_string()).unwrap_or_default()).await?;
    let info = reply.producer.unwrap_or_default();
    let value = json!({"changed": reply.changed, "producer": output::producer_json(&info)});
    output::print(format, &value, || {
        let what = match (collector, reply.changed) {
            (Some(c), true) => format!("pinned {} to {c}", info.id),
            (Some(c), false) => format!("{} was already pinned to {c} (nothing to do)", info.id),
            (None, true) => format!("unpinned {}", info.id),
            (None, false) => format!("{} had no operator pin (nothing to do)", info.id),
        };
        format!("{what}\n\n{}", output::producers_table(std::slice::from_ref(&info)))
    });
    Ok(())
}

/// A duration flag in whole milliseconds, as the API carries it.
fn ms(d: Duration, flag: &str) -> anyhow::Result<u32> {
    u32::try_from(d.as_millis()).with_context(|| format!("{flag} {d:?} is too long"))
}
