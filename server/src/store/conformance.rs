//! What every [`Store`] must do, as scenarios run against each store (`#[cfg(test)]` only): each store's tests call
//! every scenario with a fresh store of their kind, so that SQLite and PostgreSQL keep one set of semantics.

use std::time::Duration;

use roster::domain::{
    ApplyOutcome, Collection, CollectorId, MetricsPath, ProducerId, ProducerKind, PrometheusTarget, Scheme,
    SupportedKinds,
};
use uuid::Uuid;

use super::{Store, StoreError, rows::ROWS_PER_STATEMENT};
use crate::records::{Batch, CollectorRecord, Loaded, ProducerRecord, ReplicaId, StoredReport};

/// Commits `batch` as the registry does: under the store's write lock, by a replica that has seen nothing.
pub(super) async fn commit(store: &dyn Store, batch: &Batch) -> Result<u64, StoreError> {
    let begun = store.begin(ReplicaId::new_v4(), 0, false).await?;
    begun.txn.commit(batch).await
}

/// `count` collectors, each row different: reports applied, rejected or absent, departed or not, kinds varied.
pub(super) fn collectors(count: usize) -> Vec<(CollectorId, CollectorRecord)> {
    (0..count)
        .map(|i| {
            let report = (i % 3 != 0).then(|| StoredReport {
                epoch: Uuid::new_v4(),
                generation: i as u64,
                outcome: if i % 3 == 1 { ApplyOutcome::Applied } else { ApplyOutcome::Rejected(format!("r{i}")) },
                at_ms: 1_000 + i as u64,
            });
            let departed = (i % 2 == 0).then_some(2_000 + i as u64);
            let kinds = if i % 4 == 0 {
                SupportedKinds::GRPC_ONLY.with(ProducerKind::Prometheus)
            } else {
                SupportedKinds::GRPC_ONLY
            };
            (CollectorId::new_random(), CollectorRecord::restored(i as u64 + 1, report, departed, kinds))
        })
        .collect()
}

/// `count` producers, each row different, assigned to `collectors` in turn: pinned or not, gRPC or Prometheus (with
/// and without a scrape timeout).
pub(super) fn producers(count: usize, collectors: &[(CollectorId, CollectorRecord)]) -> Vec<ProducerRecord> {
    (0..count)
        .map(|i| {
            let registration = roster::domain::Registration::try_from(roster::pb::RegisterProducerRequest {
                producer_id: ProducerId::new_random().to_string(),
                address: format!("10.0.{}.{}:9100", i / 250, i % 250),
                interval_ms: 1_000 + i as u32,
                labels: [("i".to_owned(), i.to_string())].into(),
                ..Default::default()
            })
            .expect("a valid registration");
            let mut spec = registration.spec;
            if i % 4 == 1 {
                spec.collection = Collection::Prometheus(PrometheusTarget {
                    scheme: if i % 8 == 1 { Scheme::Https } else { Scheme::Http },
                    metrics_path: MetricsPath::parse_field("metrics_path", &format!("/m{i}/metrics"))
                        .expect("a valid path"),
                    scrape_timeout: (i % 8 == 1).then(|| Duration::from_millis(750)),
                });
            }
            ProducerRecord {
                spec,
                lease: Duration::from_secs(60),
                expires_at_ms: 5_000 + i as u64,
                registered_at_ms: i as u64,
                assigned: Some(collectors[i % collectors.len()].0),
                operator_pin: (i % 5 == 0).then_some(collectors[0].0),
            }
        })
        .collect()
}

/// What a store holds, in a comparable order.
async fn contents(store: &dyn Store) -> (Vec<ProducerRecord>, Vec<(CollectorId, CollectorRecord)>) {
    let mut loaded = store.load().await.expect("load");
    loaded.producers.sort_by_key(|p| p.spec.id);
    loaded.collectors.sort_by_key(|(id, _)| *id);
    (loaded.producers, loaded.collectors)
}

/// Rows are written several to a statement: a commit of more than one statement's worth of producers and of
/// collectors, each row different, reads back row for row, and so does a second commit updating some of them.
pub(super) async fn many_rows_read_back_row_for_row(store: &dyn Store) {
    let rows = 2 * ROWS_PER_STATEMENT + 3;
    let collectors = collectors(rows);
    let producers = producers(rows, &collectors);
    let mut want = (producers.clone(), collectors.clone());
    want.0.sort_by_key(|p| p.spec.id);
    want.1.sort_by_key(|(id, _)| *id);
    let batch = Batch { upsert_producers: producers, upsert_collectors: collectors, ..Batch::default() };
    commit(store, &batch).await.expect("commit");
    assert_eq!(contents(store).await, want);

    let renewed: Vec<ProducerRecord> = want
        .0
        .iter()
        .step_by(2)
        .map(|p| ProducerRecord { expires_at_ms: p.expires_at_ms + 60_000, ..p.clone() })
        .collect();
    let bumped: Vec<_> = want
        .1
        .iter()
        .step_by(2)
        .map(|(id, c)| (*id, CollectorRecord { generation: c.generation + 1, ..c.clone() }))
        .collect();
    for p in &renewed {
        *want.0.iter_mut().find(|w| w.spec.id == p.spec.id).expect("renewed is from want") = p.clone();
    }
    for (id, c) in &bumped {
        want.1.iter_mut().find(|(w, _)| w == id).expect("bumped is from want").1 = c.clone();
    }
    commit(store, &Batch { upsert_producers: renewed, upsert_collectors: bumped, ..Batch::default() })
        .await
        .expect("commit");
    assert_eq!(contents(store).await, want);
}

/// Deleted producers and collectors are gone, the rest stay; the store settles once, at the first time recorded.
pub(super) async fn deletes_and_settling_read_back(store: &dyn Store) {
    let collectors = collectors(4);
    let producers = producers(6, &collectors);
    let batch =
        Batch { upsert_producers: producers.clone(), upsert_collectors: collectors.clone(), ..Batch::default() };
    commit(store, &batch).await.expect("commit");
    assert_eq!(store.load().await.expect("load").settled_at_ms, None);
    let batch = Batch {
        delete_producers: vec![producers[0].spec.id, producers[3].spec.id, ProducerId::new_random()],
        delete_collectors: vec![collectors[1].0],
        settled_at_ms: Some(7_000),
        ..Batch::default()
    };
    commit(store, &batch).await.expect("commit");
    commit(store, &Batch { settled_at_ms: Some(9_000), ..Batch::default() }).await.expect("commit");
    let Loaded { settled_at_ms, producers: left, collectors: kept, .. } = store.load().await.expect("load");
    assert_eq!(settled_at_ms, Some(7_000), "the first settling stands");
    let mut want: Vec<ProducerId> = producers
        .iter()
        .map(|p| p.spec.id)
        .filter(|id| ![producers[0].spec.id, producers[3].spec.id].contains(id))
        .collect();
    want.sort();
    assert_eq!(left.iter().map(|p| p.spec.id).collect::<Vec<_>>(), want);
    let mut want: Vec<CollectorId> = collectors.iter().map(|(id, _)| *id).filter(|id| *id != collectors[1].0).collect();
    want.sort();
    assert_eq!(kept.iter().map(|(id, _)| *id).collect::<Vec<_>>(), want);
}

/// An empty batch commits and changes nothing; the epoch stays.
pub(super) async fn an_empty_batch_writes_nothing(store: &dyn Store) {
    let before = store.load().await.expect("load");
    commit(store, &Batch::default()).await.expect("an empty commit");
    let after = store.load().await.expect("load");
    assert_eq!((after.epoch, after.settled_at_ms), (before.epoch, before.settled_at_ms));
    assert_eq!((after.producers, after.collectors), (before.producers, before.collectors));
}
