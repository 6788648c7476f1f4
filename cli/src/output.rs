//! How the CLI prints answers: a table for people, or JSON with stable keys for programs (`--output json`).

use std::collections::BTreeMap;

use comfy_table::{Table, presets};
use roster::{
    domain::{ProducerKind, SupportedKinds},
    pb,
};
use serde_json::{Value, json};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document, stable keys.
    Json,
}

/// Prints `value` as JSON, or `table` as a table.
#[allow(clippy::print_stdout, reason = "printing the answer is what the CLI is for")]
pub(crate) fn print(format: Format, value: &Value, text: impl FnOnce() -> String) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Format::Table => println!("{}", text()),
    }
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header.to_vec());
    table
}

/// Labels as `name=value,…`. A value that could be misread is quoted and escaped as Rust writes strings
/// (`hosts="a,b"`, `note="one\ttwo\nthree"`): an empty one, one holding a separator (`,`, `=`), and one that
/// escaping changes (a quote, a backslash, a control or invisible character: a tab or a newline would break the
/// table's columns or rows, a right-to-left override would reorder them).
fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let plain = |v: &str| !v.is_empty() && !v.contains([',', '=']) && v.escape_debug().eq(v.chars());
    labels
        .iter()
        .map(|(k, v)| if plain(v) { format!("{k}={v}") } else { format!("{k}={v:?}") })
        .collect::<Vec<_>>()
        .join(",")
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// A producer's kind by name (`grpc`, `prometheus`); a number this build does not know, as such.
fn kind_text(kind: i32) -> String {
    ProducerKind::from_pb(kind).map_or_else(|| format!("unknown ({kind})"), |k| k.as_str().to_owned())
}

/// A Prometheus target in the CLI's JSON (snake_case keys, `scrape_timeout_ms` null when the collector's default).
pub(crate) fn prometheus_json(t: &pb::PrometheusTarget) -> Value {
    json!({"scheme": t.scheme, "metrics_path": t.metrics_path, "scrape_timeout_ms": t.scrape_timeout_ms})
}

/// Where a producer is collected: its `host:port`, or for a Prometheus target the URL scraped.
fn address_text(address: &str, prometheus: Option<&pb::PrometheusTarget>) -> String {
    match prometheus {
        Some(t) => format!("{}://{address}{}", t.scheme, t.metrics_path),
        None => address.to_owned(),
    }
}

pub(crate) fn producer_json(p: &pb::ProducerInfo) -> Value {
    json!({
        "id": p.id,
        "kind": kind_text(p.kind),
        "address": p.address,
        "prometheus": p.prometheus.as_ref().map(prometheus_json),
        "interval_ms": p.interval_ms,
        "labels": p.labels,
        "pinned_collector_id": p.pinned_collector_id,
        "operator_pinned_collector_id": p.operator_pinned_collector_id,
        "registrant_pinned_collector_id": p.registrant_pinned_collector_id,
        "assigned_collector_id": p.assigned_collector_id,
        "lease_ms": p.lease_ms,
        "lease_expires_at_unix_ms": p.lease_expires_at_unix_ms,
        "registered_at_unix_ms": p.registered_at_unix_ms,
    })
}

pub(crate) fn producers_table(producers: &[pb::ProducerInfo]) -> Table {
    let mut t = table(&["ID", "KIND", "ADDRESS", "INTERVAL", "LABELS", "ASSIGNED TO", "PINNED TO"]);
    for p in producers {
        t.add_row(vec![
            p.id.clone(),
            kind_text(p.kind),
            address_text(&p.address, p.prometheus.as_ref()),
            format!("{}ms", p.interval_ms),
            or_dash(&labels_text(&p.labels)).to_owned(),
            or_dash(&p.assigned_collector_id).to_owned(),
            pin_text(p),
        ]);
    }
    t
}

/// The pin in force, and whose it is: an operator's (`roster producers pin`) or the registrant's.
fn pin_text(p: &pb::ProducerInfo) -> String {
    if !p.operator_pinned_collector_id.is_empty() {
        format!("{} (operator)", p.operator_pinned_collector_id)
    } else if !p.registrant_pinned_collector_id.is_empty() {
        format!("{} (registrant)", p.registrant_pinned_collector_id)
    } else {
        or_dash(&p.pinned_collector_id).to_owned()
    }
}

fn collector_state(c: &pb::CollectorInfo) -> &'static str {
    match c.state() {
        pb::CollectorState::Live => "live",
        pb::CollectorState::Grace => "grace",
        pb::CollectorState::Departed => "departed",
        pb::CollectorState::Unspecified => "unknown",
    }
}

pub(crate) fn collector_json(c: &pb::CollectorInfo) -> Value {
    json!({
        "id": c.id,
        "state": collector_state(c),
        "open_streams": c.open_streams,
        "grace_ends_at_unix_ms": c.grace_ends_at_unix_ms,
        "assigned_count": c.assigned_count,
        "generation": c.generation,
        "reported_generation": c.reported_generation,
        "reported_outcome": match c.reported_outcome() {
            pb::ApplyOutcome::Applied => "applied",
            pb::ApplyOutcome::Rejected => "rejected",
            pb::ApplyOutcome::Unspecified => "none",
        },
        "reported_reason": c.reported_reason,
        "reported_at_unix_ms": c.reported_at_unix_ms,
        "converged": c.converged,
        "departed_at_unix_ms": c.departed_at_unix_ms,
        "forget_at_unix_ms": c.forget_at_unix_ms,
        "instances": c.instances,
        "conflict": c.conflict,
        "conflict_at_unix_ms": c.conflict_at_unix_ms,
        "supported_kinds": SupportedKinds::from_pb(&c.supported_kinds).iter().map(ProducerKind::as_str).collect::<Vec<_>>(),
    })
}

/// The collectors, and below them a line for each one that more than one process uses (a copied data directory).
pub(crate) fn collectors_text(collectors: &[pb::CollectorInfo]) -> String {
    let mut text = collectors_table(collectors).to_string();
    for c in collectors.iter().filter(|c| !c.conflict.is_empty()) {
        text.push_str(&format!("\n\nCONFLICT {} ({} processes): {}", c.id, c.instances, c.conflict));
    }
    text
}

fn collectors_table(collectors: &[pb::CollectorInfo]) -> Table {
    let mut t = table(&["ID", "STATE", "KINDS", "PRODUCERS", "GENERATION", "APPLIED", "CONVERGED", "PROCESSES"]);
    for c in collectors {
        t.add_row(vec![
            c.id.clone(),
            collector_state(c).to_owned(),
            SupportedKinds::from_pb(&c.supported_kinds).names(),
            c.assigned_count.to_string(),
            c.generation.to_string(),
            if c.reported_generation == 0 { "-".to_owned() } else { c.reported_generation.to_string() },
            if c.converged { "yes" } else { "no" }.to_owned(),
            match c.instances {
                0 => "-".to_owned(),
                1 => "1".to_owned(),
                n => format!("{n} CONFLICT"),
            },
        ]);
    }
    t
}

pub(crate) fn status_json(s: &pb::GetStatusResponse) -> Value {
    json!({
        "collector_id": s.collector_id,
        "endpoint": s.endpoint,
        "connected": s.connected,
        "connected_changed_at_unix_ms": s.connected_changed_at_unix_ms,
        "applied_epoch": s.applied_epoch,
        "applied_generation": s.applied_generation,
        "applied_at_unix_ms": s.applied_at_unix_ms,
        "applied_producer_count": s.applied_producer_count,
        "last_contact_unix_ms": s.last_contact_unix_ms,
        "reconnects": s.reconnects,
        "discards": s.discards,
        "held_reason": s.held_reason,
        "samples_written": s.samples_written,
        "samples_dropped": s.samples_dropped,
        "sink_error": s.sink_error,
        "persist_error": s.persist_error,
        "persist_failures": s.persist_failures,
        "persisted_snapshots": s.persisted_snapshots,
        "persisted_generation": s.persisted_generation,
        "instance_id": s.instance_id,
        "feed_refused": s.feed_refused,
        "sinks": s.sinks.iter().map(|k| json!({
            "kind": k.kind,
            "destination": k.destination,
            "samples_written": k.samples_written,
            "samples_dropped": k.samples_dropped,
            "last_error": k.last_error,
            "samples_sent": k.samples_sent,
            "requests_retried": k.requests_retried,
            "samples_discarded": k.samples_discarded,
            "queue_bytes": k.queue_bytes,
            "queue_samples": k.queue_samples,
            "oldest_queued_sample_unix_ms": k.oldest_queued_sample_unix_ms,
            "healthy": k.healthy,
            "receiver_error": k.receiver_error,
        })).collect::<Vec<_>>(),
        "producers": s.producers.iter().map(|p| json!({
            "id": p.id,
            "address": p.address,
            "interval_ms": p.interval_ms,
            "collections": p.collections,
            "failures": p.failures,
            "last_success_unix_ms": p.last_success_unix_ms,
            "last_failure_unix_ms": p.last_failure_unix_ms,
            "last_error": p.last_error,
            "skipped_ticks": p.skipped_ticks,
            "own_stalls": p.own_stalls,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn status_text(s: &pb::GetStatusResponse) -> String {
    let mut t = table(&["PRODUCER", "ADDRESS", "COLLECTIONS", "FAILURES", "LAST ERROR"]);
    for p in &s.producers {
        t.add_row(vec![
            p.id.clone(),
            p.address.clone(),
            p.collections.to_string(),
            p.failures.to_string(),
            or_dash(&p.last_error).to_owned(),
        ]);
    }
    let discards = s.discards.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let mut summary =
        table(&["COLLECTOR", "CONNECTED", "ENDPOINT", "GENERATION", "PRODUCERS", "RECONNECTS", "DISCARDS", "SAMPLES"]);
    summary.add_row(vec![
        s.collector_id.clone(),
        if s.connected { "yes" } else { "no" }.to_owned(),
        s.endpoint.clone(),
        s.applied_generation.to_string(),
        s.applied_producer_count.to_string(),
        s.reconnects.to_string(),
        or_dash(&discards).to_owned(),
        format!("{} written, {} dropped", s.samples_written, s.samples_dropped),
    ]);
    let mut problems = String::new();
    for (what, error) in
        [("feed refused", &s.feed_refused), ("persist error", &s.persist_error), ("sink error", &s.sink_error)]
    {
        if !error.is_empty() {
            problems.push_str(&format!("\n{what}: {error}"));
        }
    }
    format!("{summary}{problems}\n\n{}\n\n{t}", sinks_text(&s.sinks))
}

/// One row per destination; the receiver columns only for remote-write.
fn sinks_text(sinks: &[pb::SinkStatus]) -> String {
    let mut t =
        table(&["SINK", "DESTINATION", "WRITTEN", "DROPPED", "SENT", "RETRIED", "DISCARDED", "QUEUED", "HEALTHY"]);
    for k in sinks {
        let remote = k.kind == "remote-write";
        let discarded = k.samples_discarded.iter().map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>().join(",");
        let queued = format!("{} samples, {} bytes", k.queue_samples, k.queue_bytes);
        let health = match (k.healthy, k.receiver_error.as_str()) {
            (true, _) => "yes".to_owned(),
            (false, "") => "not yet".to_owned(),
            (false, error) => format!("no: {error}"),
        };
        let only_remote = |text: String| if remote { text } else { "-".to_owned() };
        t.add_row(vec![
            k.kind.clone(),
            k.destination.clone(),
            k.samples_written.to_string(),
            k.samples_dropped.to_string(),
            only_remote(k.samples_sent.to_string()),
            only_remote(k.requests_retried.to_string()),
            only_remote(or_dash(&discarded).to_owned()),
            only_remote(queued),
            only_remote(health),
        ]);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value reads back as it is, and the table keeps one line per producer, whatever the labels hold.
    #[test]
    fn label_values_that_could_be_misread_are_quoted_and_escaped() {
        let labels: BTreeMap<String, String> = [
            ("a", "node"),
            ("b", "x,y=z"),
            ("c", "tab\there\nnewline"),
            ("d", ""),
            ("e", "say \"hi\" \\o/"),
            ("f", "ünïcode ok"),
            ("g", "abc\u{202e}def"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        assert_eq!(
            labels_text(&labels),
            r#"a=node,b="x,y=z",c="tab\there\nnewline",d="",e="say \"hi\" \\o/",f=ünïcode ok,g="abc\u{202e}def""#
        );
        let producer = pb::ProducerInfo { id: "p".into(), labels: labels.into_iter().collect(), ..Default::default() };
        let table = producers_table(&[producer]).to_string();
        assert_eq!(table.lines().count(), 2, "a header and one row:\n{table}");
    }
}
