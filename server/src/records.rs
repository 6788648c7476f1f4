//! What the registry persists: the producer and collector records, everything a store holds ([`Loaded`]) and one
//! transaction's worth of changes ([`Batch`]).
//!
//! These types are the one contract between the registry and a store. They live apart from both so that neither
//! depends on the other: the registry's state turns its changes into a [`Batch`] and is rebuilt from a [`Loaded`],
//! and a store (`crate::store`) reads and writes them without knowing any registry rule.

use std::{collections::BTreeMap, time::Duration};

use roster::domain::{ApplyOutcome, CollectorId, ProducerId, ProducerSpec, SupportedKinds};
use uuid::Uuid;

/// One roster-server process among those sharing a store: a new id at every start. A collector's feed streams are
/// counted per replica ([`CollectorRecord::holders`]), so that the streams of a replica that died can be told apart
/// and closed for it.
pub(crate) type ReplicaId = Uuid;

/// A registered producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerRecord {
    /// What its registrant said.
    pub spec: ProducerSpec,
    /// Its lease length.
    pub lease: Duration,
    /// When its lease lapses unless renewed.
    pub expires_at_ms: u64,
    /// When it was first registered.
    pub registered_at_ms: u64,
    /// The collector that collects it, if any is eligible.
    pub assigned: Option<CollectorId>,
    /// The operator pin (`SetProducerPin`): kept across registrations, changed only by an operator.
    pub operator_pin: Option<CollectorId>,
}

impl ProducerRecord {
    /// The pin in force (L4): the operator's if set, else the registrant's.
    pub(crate) fn pin(&self) -> Option<CollectorId> {
        self.operator_pin.or(self.spec.pinned)
    }
}

/// Whether a collector is eligible for assignment (L2). A single server decides liveness again when it loads its
/// store (it held every stream, and they ended with it); replicas sharing a store keep it there, with each stream
/// counted for the replica that holds it ([`CollectorRecord::holders`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// `streams` feed streams are open.
    Live {
        /// Open streams, at least 1: the sum of [`CollectorRecord::holders`].
        streams: u32,
    },
    /// No stream is open; still eligible until `until_ms`.
    Grace {
        /// End of the grace period.
        until_ms: u64,
    },
    /// Not eligible; forgotten once departed for the registry's `forget_after`.
    Departed {
        /// When it departed: the end of its grace period, or the load of the store for a collector that was not
        /// departed when last written. 0 only transiently (see [`CollectorRecord::restored`]).
        since_ms: u64,
    },
}

impl Liveness {
    /// Whether the collector may be assigned producers: live or in grace (L2).
    pub(crate) fn eligible(self) -> bool {
        !matches!(self, Self::Departed { .. })
    }
}

/// A collector's last report (C4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredReport {
    /// The epoch reported on.
    pub epoch: Uuid,
    /// The generation reported on.
    pub generation: u64,
    /// Applied or rejected.
    pub outcome: ApplyOutcome,
    /// When the report arrived.
    pub at_ms: u64,
}

/// A known collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CollectorRecord {
    /// Its assignment generation in this epoch (starts at 1).
    pub generation: u64,
    /// Its liveness.
    pub liveness: Liveness,
    /// Its last report.
    pub report: Option<StoredReport>,
    /// The producer kinds it collects, as its last `Watch` said. Persisted, so that after a restart a collector in
    /// grace keeps the producers of every kind it had (nothing moves unless it stays away).
    pub supported_kinds: SupportedKinds,
    /// Its open feed streams, per replica holding them; empty unless [`Liveness::Live`]. Changed only through
    /// [`CollectorRecord::stream_opened`], [`CollectorRecord::stream_closed`] and [`CollectorRecord::keep_holders`],
    /// which keep the liveness in step.
    pub holders: BTreeMap<ReplicaId, u32>,
}

impl CollectorRecord {
    /// A record read back from the store, with the departure time stored for it (`None` when it was live or in
    /// grace when last written); the registry decides its liveness when it loads the store.
    pub(crate) fn restored(
        generation: u64,
        report: Option<StoredReport>,
        departed_at_ms: Option<u64>,
        supported_kinds: SupportedKinds,
    ) -> Self {
        Self {
            generation,
            liveness: Liveness::Departed { since_ms: departed_at_ms.unwrap_or(0) },
            report,
            supported_kinds,
            holders: BTreeMap::new(),
        }
    }

    /// The record with the liveness a shared store keeps: its streams per replica (`holders`), else the end of its
    /// grace period, else its departure (as [`CollectorRecord::restored`] set it).
    pub(crate) fn with_stored_liveness(
        mut self,
        holders: BTreeMap<ReplicaId, u32>,
        grace_until_ms: Option<u64>,
    ) -> Self {
        let streams: u32 = holders.values().sum();
        if streams > 0 {
            self.liveness = Liveness::Live { streams };
            self.holders = holders;
        } else if let Some(until_ms) = grace_until_ms {
            self.liveness = Liveness::Grace { until_ms };
        }
        self
    }

    /// When its grace period ends, if it is in grace.
    pub(crate) fn grace_until_ms(&self) -> Option<u64> {
        match self.liveness {
            Liveness::Grace { until_ms } => Some(until_ms),
            Liveness::Live { .. } | Liveness::Departed { .. } => None,
        }
    }

    /// A new record, of a collector of gRPC producers until its `Watch` says more; every caller makes it live or in
    /// grace at once.
    pub(crate) fn new() -> Self {
        Self {
            generation: 1,
            liveness: Liveness::Departed { since_ms: 0 },
            report: None,
            supported_kinds: SupportedKinds::GRPC_ONLY,
            holders: BTreeMap::new(),
        }
    }

    /// A feed stream of this collector opened on `replica`: it is live.
    pub(crate) fn stream_opened(&mut self, replica: ReplicaId) {
        let streams = self.holders.get(&replica).copied().unwrap_or(0).saturating_add(1);
        // With a stream open, no grace period starts: its end is never read.
        self.hold(replica, streams, 0);
    }

    /// A feed stream of this collector closed on `replica`; when it was the last one anywhere, the collector is in
    /// grace until `grace_until_ms` (L2). A replica that holds none (its streams were already closed for it) changes
    /// nothing.
    pub(crate) fn stream_closed(&mut self, replica: ReplicaId, grace_until_ms: u64) {
        if let Some(&streams) = self.holders.get(&replica) {
            self.hold(replica, streams - 1, grace_until_ms);
        }
    }

    /// Closes the streams of every replica but those `alive` says are: a replica that died or lost the store holds
    /// nothing. Returns whether any was closed; when none is left, the collector is in grace until
    /// `grace_until_ms` (L2).
    pub(crate) fn keep_holders(&mut self, alive: impl Fn(&ReplicaId) -> bool, grace_until_ms: u64) -> bool {
        let before = self.holders.len();
        self.holders.retain(|replica, _| alive(replica));
        let closed = self.holders.len() != before;
        if closed {
            self.relive(grace_until_ms);
        }
        closed
    }

    /// Sets the count of this collector's streams open on `replica` to `streams`; with none left anywhere, the
    /// collector is in grace until `grace_until_ms` (L2).
    pub(crate) fn hold(&mut self, replica: ReplicaId, streams: u32, grace_until_ms: u64) {
        if streams == 0 {
            self.holders.remove(&replica);
        } else {
            self.holders.insert(replica, streams);
        }
        self.relive(grace_until_ms);
    }

    /// The liveness that the holders say, after some of their streams closed.
    fn relive(&mut self, grace_until_ms: u64) {
        self.liveness = match (self.holders.values().sum(), self.liveness) {
            (0, Liveness::Live { .. }) => Liveness::Grace { until_ms: grace_until_ms },
            (0, unchanged) => unchanged,
            (streams, _) => Liveness::Live { streams },
        };
    }

    /// When it departed, if it has.
    pub(crate) fn departed_at_ms(&self) -> Option<u64> {
        match self.liveness {
            Liveness::Departed { since_ms } => Some(since_ms),
            Liveness::Live { .. } | Liveness::Grace { .. } => None,
        }
    }
}

/// Everything the store holds, read at start.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The store's epoch.
    pub epoch: Uuid,
    /// The store's revision when it was read: what the replicas sharing it count their catch-up from (0 for a store
    /// with one server).
    pub revision: u64,
    /// When the store settled (C3), if it has.
    pub settled_at_ms: Option<u64>,
    /// Every producer.
    pub producers: Vec<ProducerRecord>,
    /// Every collector ever seen in this epoch, with its generation.
    pub collectors: Vec<(CollectorId, CollectorRecord)>,
}

/// One transaction's worth of changes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Batch {
    /// Producers to insert or replace.
    pub upsert_producers: Vec<ProducerRecord>,
    /// Producers to delete.
    pub delete_producers: Vec<ProducerId>,
    /// Collectors to insert or replace.
    pub upsert_collectors: Vec<(CollectorId, CollectorRecord)>,
    /// Set when the store settled: recorded once, so a restart does not settle it again.
    pub settled_at_ms: Option<u64>,
    /// Collectors to delete (forgotten).
    pub delete_collectors: Vec<CollectorId>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.upsert_producers.is_empty()
            && self.delete_producers.is_empty()
            && self.upsert_collectors.is_empty()
            && self.settled_at_ms.is_none()
            && self.delete_collectors.is_empty()
    }
}
