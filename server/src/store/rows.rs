//! The rows both SQL stores keep, one way for both: a producer or a collector record as the columns of its row,
//! written by [`push_producer`] and [`push_collector`] into a multi-row `INSERT` and read back by
//! [`ProducerRow::record`] and [`CollectorRow::record`]. SQLite and PostgreSQL hold the same columns with the same
//! meaning (ids as text, times as Unix milliseconds, labels as a JSON object of strings), so the stores differ only
//! in their SQL around these rows, and in what they add (PostgreSQL's revisions).
//!
//! A row that does not parse is reported as the problem (`id: what is wrong`); the store names itself and the table
//! ([`super::StoreError::Corrupt`]).

use std::{collections::BTreeMap, time::Duration};

use roster::domain::{
    ApplyOutcome, Collection, CollectorId, Labels, MetricsPath, ProducerAddress, ProducerId, ProducerSpec,
    PrometheusTarget, Scheme, SupportedKinds,
};
use sqlx::{Database, Encode, Type, query_builder::Separated};
use uuid::Uuid;

use crate::{
    clock::ms,
    records::{CollectorRecord, ProducerRecord, ReplicaId, StoredReport},
};

/// The producers table's columns, in the order [`push_producer`] writes them.
pub(super) const PRODUCER_COLUMNS: &str = "id, address, interval_ms, labels, pinned_collector, lease_ms, \
                                           expires_at_ms, registered_at_ms, assigned_collector, operator_pin, kind, \
                                           scheme, metrics_path, scrape_timeout_ms";

/// What an upsert of producers sets when the row exists: every column but the id.
pub(super) const PRODUCER_UPDATES: &str = "address = excluded.address, interval_ms = excluded.interval_ms, \
     labels = excluded.labels, pinned_collector = excluded.pinned_collector, lease_ms = excluded.lease_ms, \
     expires_at_ms = excluded.expires_at_ms, registered_at_ms = excluded.registered_at_ms, \
     assigned_collector = excluded.assigned_collector, operator_pin = excluded.operator_pin, kind = excluded.kind, \
     scheme = excluded.scheme, metrics_path = excluded.metrics_path, scrape_timeout_ms = excluded.scrape_timeout_ms";

/// The collectors table's columns, in the order [`push_collector`] writes them.
pub(super) const COLLECTOR_COLUMNS: &str = "id, generation, reported_epoch, reported_generation, reported_outcome, \
                                            reported_reason, reported_at_ms, departed_at_ms, supported_kinds, \
                                            grace_until_ms, holders";

/// What an upsert of collectors sets when the row exists: every column but the id.
pub(super) const COLLECTOR_UPDATES: &str = "generation = excluded.generation, \
     reported_epoch = excluded.reported_epoch, reported_generation = excluded.reported_generation, \
     reported_outcome = excluded.reported_outcome, reported_reason = excluded.reported_reason, \
     reported_at_ms = excluded.reported_at_ms, departed_at_ms = excluded.departed_at_ms, \
     supported_kinds = excluded.supported_kinds, grace_until_ms = excluded.grace_until_ms, holders = excluded.holders";

/// Rows (producers, collectors) written by one statement of a commit, in both stores: a statement per row cost a
/// round trip each (to sqlx's SQLite thread: a channel send and a thread wake-up; to PostgreSQL: the network), the
/// most of a commit of renewals, and of one of registrations under watch (each applied snapshot's report updates its
/// collector's row). 128 rows of at most 15 columns (14, and PostgreSQL's revision) are 1 920 parameters, well
/// within SQLite's limit of 32 766 and PostgreSQL's of 65 535.
pub(super) const ROWS_PER_STATEMENT: usize = 128;

/// `reported_outcome` of an applied snapshot.
const APPLIED: i64 = 1;
/// `reported_outcome` of a rejected snapshot (its reason in `reported_reason`).
const REJECTED: i64 = 2;

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A producers row as read, borrowing from the database's row.
#[derive(sqlx::FromRow)]
pub(super) struct ProducerRow<'r> {
    id: &'r str,
    address: &'r str,
    interval_ms: i64,
    labels: &'r str,
    pinned_collector: Option<&'r str>,
    lease_ms: i64,
    expires_at_ms: i64,
    registered_at_ms: i64,
    assigned_collector: Option<&'r str>,
    operator_pin: Option<&'r str>,
    kind: &'r str,
    scheme: Option<&'r str>,
    metrics_path: Option<&'r str>,
    scrape_timeout_ms: Option<i64>,
}

impl ProducerRow<'_> {
    /// The record, or what is wrong with the row.
    pub(super) fn record(&self) -> Result<ProducerRecord, String> {
        let id = self.id;
        let bad = |e: &dyn std::fmt::Display| format!("{id}: {e}");
        let parse_collector = |column: &str, value: Option<&str>| {
            value.map(|s| CollectorId::parse_accepted(column, s).map_err(|e| bad(&e))).transpose()
        };
        let labels: BTreeMap<String, String> =
            serde_json::from_str(self.labels).map_err(|e| format!("{id}: labels: {e}"))?;
        let collection = match self.kind {
            "grpc" => Collection::Grpc,
            "prometheus" => Collection::Prometheus(PrometheusTarget {
                scheme: Scheme::parse_field("scheme", self.scheme.unwrap_or_default()).map_err(|e| bad(&e))?,
                metrics_path: MetricsPath::parse_field("metrics_path", self.metrics_path.unwrap_or_default())
                    .map_err(|e| bad(&e))?,
                scrape_timeout: self.scrape_timeout_ms.map(|t| Duration::from_millis(to_u64(t))),
            }),
            other => return Err(format!("{id}: kind {other:?} is neither grpc nor prometheus")),
        };
        Ok(ProducerRecord {
            spec: ProducerSpec {
                // Rows were accepted when written, perhaps under looser rules than today's: read them as such.
                id: ProducerId::parse_accepted("id", id).map_err(|e| bad(&e))?,
                address: ProducerAddress::parse_accepted("address", self.address.to_owned()).map_err(|e| bad(&e))?,
                interval: Duration::from_millis(to_u64(self.interval_ms)),
                labels: Labels::parse_field("labels", labels).map_err(|e| bad(&e))?,
                pinned: parse_collector("pinned_collector", self.pinned_collector)?,
                collection,
            },
            lease: Duration::from_millis(to_u64(self.lease_ms)),
            expires_at_ms: to_u64(self.expires_at_ms),
            registered_at_ms: to_u64(self.registered_at_ms),
            assigned: parse_collector("assigned_collector", self.assigned_collector)?,
            operator_pin: parse_collector("operator_pin", self.operator_pin)?,
        })
    }
}

/// A collectors row as read, borrowing from the database's row.
#[derive(sqlx::FromRow)]
pub(super) struct CollectorRow<'r> {
    id: &'r str,
    generation: i64,
    reported_epoch: Option<&'r str>,
    reported_generation: Option<i64>,
    reported_outcome: Option<i64>,
    reported_reason: Option<&'r str>,
    reported_at_ms: Option<i64>,
    departed_at_ms: Option<i64>,
    supported_kinds: &'r str,
    grace_until_ms: Option<i64>,
    holders: &'r str,
}

impl CollectorRow<'_> {
    /// The record, or what is wrong with the row.
    pub(super) fn record(&self) -> Result<(CollectorId, CollectorRecord), String> {
        let id = self.id;
        let bad = |problem: String| format!("{id}: {problem}");
        let collector = CollectorId::parse_accepted("id", id).map_err(|e| bad(e.to_string()))?;
        let report = match self.reported_epoch {
            None => None,
            Some(epoch) => Some(StoredReport {
                epoch: Uuid::parse_str(epoch).map_err(|e| bad(format!("reported_epoch: {e}")))?,
                generation: to_u64(self.reported_generation.unwrap_or(0)),
                outcome: match self.reported_outcome {
                    Some(APPLIED) => ApplyOutcome::Applied,
                    Some(REJECTED) => ApplyOutcome::Rejected(self.reported_reason.unwrap_or_default().to_owned()),
                    other => return Err(bad(format!("reported_outcome {other:?}"))),
                },
                at_ms: to_u64(self.reported_at_ms.unwrap_or(0)),
            }),
        };
        let supported_kinds =
            SupportedKinds::from_names(self.supported_kinds).map_err(|e| bad(format!("supported_kinds: {e}")))?;
        let departed_at_ms = self.departed_at_ms.map(to_u64);
        let holders = parse_holders(self.holders).map_err(|e| bad(format!("holders {:?}: {e}", self.holders)))?;
        let record = CollectorRecord::restored(to_u64(self.generation), report, departed_at_ms, supported_kinds)
            .with_stored_liveness(holders, self.grace_until_ms.map(to_u64));
        Ok((collector, record))
    }
}

/// Pushes `p`'s columns ([`PRODUCER_COLUMNS`]) as one row of a `VALUES` list.
pub(super) fn push_producer<DB: Database>(row: &mut Separated<'_, DB, &'static str>, p: &ProducerRecord)
where
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    &'static str: for<'t> Encode<'t, DB> + Type<DB>,
    Option<&'static str>: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
{
    let labels = serde_json::to_string(&p.spec.labels.iter().collect::<BTreeMap<_, _>>())
        .expect("a map of strings always serialises");
    let prometheus = match &p.spec.collection {
        Collection::Grpc => None,
        Collection::Prometheus(target) => Some(target),
    };
    row.push_bind(p.spec.id.to_string())
        .push_bind(p.spec.address.as_str().to_owned())
        .push_bind(to_i64(ms(p.spec.interval)))
        .push_bind(labels)
        .push_bind(p.spec.pinned.map(|c| c.to_string()))
        .push_bind(to_i64(ms(p.lease)))
        .push_bind(to_i64(p.expires_at_ms))
        .push_bind(to_i64(p.registered_at_ms))
        .push_bind(p.assigned.map(|c| c.to_string()))
        .push_bind(p.operator_pin.map(|c| c.to_string()))
        .push_bind(p.spec.collection.kind().as_str())
        .push_bind(prometheus.map(|t| t.scheme.as_str()))
        .push_bind(prometheus.map(|t| t.metrics_path.as_str().to_owned()))
        .push_bind(prometheus.and_then(|t| t.scrape_timeout).map(|t| to_i64(ms(t))));
}

/// Pushes the columns of collector `id` ([`COLLECTOR_COLUMNS`]) as one row of a `VALUES` list.
pub(super) fn push_collector<DB: Database>(
    row: &mut Separated<'_, DB, &'static str>,
    id: CollectorId,
    c: &CollectorRecord,
) where
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
{
    let report = c.report.as_ref();
    row.push_bind(id.to_string())
        .push_bind(to_i64(c.generation))
        .push_bind(report.map(|r| r.epoch.to_string()))
        .push_bind(report.map(|r| to_i64(r.generation)))
        .push_bind(report.map(|r| match r.outcome {
            ApplyOutcome::Applied => APPLIED,
            ApplyOutcome::Rejected(_) => REJECTED,
        }))
        .push_bind(report.and_then(|r| match &r.outcome {
            ApplyOutcome::Applied => None,
            ApplyOutcome::Rejected(reason) => Some(reason.clone()),
        }))
        .push_bind(report.map(|r| to_i64(r.at_ms)))
        .push_bind(c.departed_at_ms().map(to_i64))
        .push_bind(c.supported_kinds.names())
        .push_bind(c.grace_until_ms().map(to_i64))
        .push_bind(holders_text(&c.holders));
}

/// A collector's open streams per replica as the `holders` column keeps them: `replica=streams` pairs, comma-separated
/// (empty for none).
fn holders_text(holders: &BTreeMap<ReplicaId, u32>) -> String {
    holders.iter().map(|(replica, streams)| format!("{replica}={streams}")).collect::<Vec<_>>().join(",")
}

/// The `holders` column read back.
fn parse_holders(text: &str) -> Result<BTreeMap<ReplicaId, u32>, String> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (replica, streams) = pair.split_once('=').ok_or("a pair without '='")?;
            let replica = ReplicaId::parse_str(replica).map_err(|e| format!("replica {replica:?}: {e}"))?;
            let streams = streams.parse::<u32>().map_err(|e| format!("streams {streams:?}: {e}"))?;
            Ok((replica, streams))
        })
        .collect()
}
