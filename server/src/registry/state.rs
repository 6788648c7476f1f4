//! The registry's working state and every rule that changes it, as a pure state machine: no I/O, no clock (the
//! time is passed in), no channels.
//!
//! Each operation mutates the state and records in a [`Changes`] what it touched. [`State::finish`] then bumps
//! the generation of every collector whose assignment changed (once per batch, however many changes it took)
//! and turns the touched records into a [`Batch`] for the store. The actor commits that batch and only then publishes
//! snapshots, so nothing that is not on disk is ever sent (S7).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use roster::domain::{
    ApplyOutcome, ApplyReport, CollectorId, PinChange, ProducerId, ProducerKind, ProducerQuery, ProducerSpec,
    Registration, SupportedKinds,
};
use uuid::Uuid;

use crate::{
    assign,
    clock::ms,
    feed::snapshot::{Assignment, Entry},
    records::{Batch, CollectorRecord, Liveness, Loaded, ProducerRecord, ReplicaId, StoredReport},
};

/// What one batch of operations touched.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    producers: BTreeSet<ProducerId>,
    collectors: BTreeSet<CollectorId>,
    /// Collectors whose assignment changed: their generation is bumped in [`State::finish`].
    dirty: BTreeSet<CollectorId>,
    /// Set when the store settled in this batch.
    settled_at_ms: Option<u64>,
}

impl Changes {
    /// Whether `collector` gets a new generation in this batch.
    pub(crate) fn moves_generation(&self, collector: CollectorId) -> bool {
        self.dirty.contains(&collector)
    }

    /// Gives `collector` a new generation in this batch, though its assignment did not change.
    pub(crate) fn move_generation(&mut self, collector: CollectorId) {
        self.dirty.insert(collector);
    }
}

/// Registry settings that the rules depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Lease given when a registration asks for none.
    pub default_lease: Duration,
    /// How long a collector stays eligible after its last stream closed (L2).
    pub grace: Duration,
    /// How long a new store settles (C3): serving time in which every live producer renews, so it must cover the
    /// longest renewal interval in use (a quarter of the longest lease).
    pub settle: Duration,
    /// How long a departed collector is kept before it is forgotten.
    pub forget_after: Duration,
}

/// Result of a registration.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    /// The producer as stored.
    pub record: ProducerRecord,
    /// Whether it was new.
    pub created: bool,
}

/// One page of producers.
#[derive(Debug, Clone)]
pub(crate) struct ProducerPage {
    /// The producers.
    pub producers: Vec<ProducerRecord>,
    /// Set when more follow.
    pub next_after: Option<ProducerId>,
    /// How many match in all.
    pub total: u64,
}

/// How long a refused process still counts among a collector's instances, so the conflict stays visible between
/// its retries (the feed's backoff is capped at 30 s by default).
pub(crate) const CONFLICT_SHOWN_FOR: Duration = Duration::from_secs(120);

/// Most refused instances remembered per collector: what a client can make the server hold is bounded.
const MAX_REFUSED_REMEMBERED: usize = 16;

/// The processes (Watch instance ids) using one collector id. Not persisted: it describes open streams.
#[derive(Debug, Clone, Default)]
struct Instances {
    /// Open streams per instance.
    open: BTreeMap<Uuid, u32>,
    /// Instances refused lately, with when they were last refused (Unix ms).
    refused: BTreeMap<Uuid, u64>,
}

/// A `Watch` refused because another process with the same collector id holds the feed (a copied data directory):
/// both would collect every producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The collector id both use.
    pub collector: CollectorId,
    /// The instance whose streams are open.
    pub running: Uuid,
    /// The instance refused.
    pub refused: Uuid,
}

/// What a collector's instances look like now, when more than one process used its id lately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConflictView {
    /// The instance holding the feed now, if any.
    pub running: Option<Uuid>,
    /// The instances refused within [`CONFLICT_SHOWN_FOR`].
    pub refused: Vec<Uuid>,
    /// When the last refusal happened (Unix ms).
    pub last_refused_at_ms: u64,
}

/// A collector as listed.
#[derive(Debug, Clone)]
pub(crate) struct CollectorView {
    /// Its id.
    pub id: CollectorId,
    /// Its record.
    pub record: CollectorRecord,
    /// How many producers it has now.
    pub assigned: usize,
    /// Whether its last report is an APPLIED of its current generation in this epoch.
    pub converged: bool,
    /// For a departed collector: when it will be forgotten.
    pub forget_at_ms: Option<u64>,
    /// How many processes (instance ids) used its id lately: with open streams, or refused lately.
    pub instances: usize,
    /// Set when that is more than one.
    pub conflict: Option<ConflictView>,
}

/// L3: a lease gets at least one renewal interval (a quarter of it) from `now_ms`, at a start or after an absence.
/// Returns whether it was extended.
fn floor_lease(record: &mut ProducerRecord, now_ms: u64) -> bool {
    let floor = now_ms.saturating_add(ms(record.lease / 4));
    let extend = record.expires_at_ms < floor;
    if extend {
        record.expires_at_ms = floor;
    }
    extend
}

/// The snapshot entry of a producer: what its collector is sent.
fn entry_of(spec: &ProducerSpec) -> Entry {
    Entry::new(&spec.to_assigned())
}

/// The collectors eligible for each producer kind (in [`ProducerKind::ALL`] order): a producer goes only to one
/// that supports its kind, and stays unassigned while none does.
struct Eligible([Vec<CollectorId>; ProducerKind::ALL.len()]);

impl Eligible {
    /// Those eligible for a producer of `spec`'s kind.
    fn of(&self, spec: &ProducerSpec) -> &[CollectorId] {
        // `ProducerKind::ALL` lists the kinds in declaration order, so a kind's discriminant is its index.
        &self.0[spec.collection.kind() as usize]
    }
}

/// What catching up with other replicas' changes did to the state.
#[derive(Debug, Default)]
pub(crate) struct CaughtUp {
    /// Collectors whose generation changed: their feeds publish it.
    pub dirty: BTreeSet<CollectorId>,
    /// Collectors forgotten: their feeds end.
    pub forgotten: Vec<CollectorId>,
}

/// The registry's working state.
#[derive(Debug)]
pub(crate) struct State {
    /// This server among the replicas sharing its store; a new id at every start.
    replica: ReplicaId,
    /// Whether replicas share the store: then liveness is read from it, not decided at start (see [`State::join`]).
    shared: bool,
    /// The store's revision this state reflects.
    revision: u64,
    epoch: Uuid,
    /// When the store settles; `None` once it has.
    settle_at_ms: Option<u64>,
    rules: Rules,
    producers: BTreeMap<ProducerId, ProducerRecord>,
    collectors: BTreeMap<CollectorId, CollectorRecord>,
    /// Each collector's producers with their snapshot entries, kept in step with `producers` (`assigned`, spec).
    by_collector: BTreeMap<CollectorId, Assignment>,
    instances: BTreeMap<CollectorId, Instances>,
}

impl State {
    /// Rebuilds the state from the store at start, and applies the start-up rules:
    /// - L3: every lease gets at least one renewal interval (a quarter of it) from now, so no lease lapses for
    ///   time the server was down;
    /// - L2 and S7: every collector that has producers is in grace from now, so the persisted assignment is served
    ///   as it is and nothing moves unless a collector stays away for the whole grace period.
    ///
    /// The returned [`Changes`] hold the extended leases, to be committed before serving.
    pub(crate) fn from_loaded(loaded: Loaded, rules: Rules, now_ms: u64) -> (Self, Changes) {
        // A store that has not settled yet settles one whole settle period from now: like a lease (L3), the
        // time it was down does not count, since no producer could register meanwhile.
        let mut state = Self {
            replica: ReplicaId::new_v4(),
            shared: false,
            revision: loaded.revision,
            epoch: loaded.epoch,
            settle_at_ms: loaded.settled_at_ms.is_none().then(|| now_ms.saturating_add(ms(rules.settle))),
            rules,
            producers: BTreeMap::new(),
            // The streams the store counted ended with the server that held them: every collector starts as it would
            // be had it not been live or in grace, and is decided below.
            collectors: loaded
                .collectors
                .into_iter()
                .map(|(id, mut record)| {
                    record.holders.clear();
                    if record.liveness.eligible() {
                        record.liveness = Liveness::Departed { since_ms: 0 };
                    }
                    (id, record)
                })
                .collect(),
            by_collector: BTreeMap::new(),
            instances: BTreeMap::new(),
        };
        let mut changes = Changes::default();
        let grace_until = now_ms.saturating_add(ms(rules.grace));
        for mut record in loaded.producers {
            if floor_lease(&mut record, now_ms) {
                changes.producers.insert(record.spec.id);
            }
            if let Some(c) = record.assigned {
                state.by_collector.entry(c).or_default().insert(record.spec.id, entry_of(&record.spec));
                let kind = record.spec.collection.kind();
                let collector = state.collectors.entry(c).or_insert_with(|| {
                    changes.collectors.insert(c);
                    // A producer assigned to a collector without a row (a damaged or hand-edited store): it was
                    // given this kind, so it collected it.
                    let mut new = CollectorRecord::new();
                    new.supported_kinds = new.supported_kinds.with(kind);
                    new
                });
                collector.liveness = Liveness::Grace { until_ms: grace_until };
            }
            state.producers.insert(record.spec.id, record);
        }
        // A collector that was live or in grace when last written, and has no producers to keep, departs now.
        for (id, collector) in &mut state.collectors {
            if collector.liveness == (Liveness::Departed { since_ms: 0 }) {
                collector.liveness = Liveness::Departed { since_ms: now_ms };
                changes.collectors.insert(*id);
            }
        }
        (state, changes)
    }

    /// Builds the state of a replica joining others on a shared store: everything as stored, liveness included,
    /// since the other replicas hold streams. What a single server decides at its start, replicas leave to the one
    /// that leads: it closes the streams of replicas that are gone (their collectors enter grace, L2) and forgives
    /// the time when none led (L3), see [`State::keep_holders`] and [`State::forgive_absence`].
    pub(crate) fn join(loaded: Loaded, rules: Rules, now_ms: u64) -> Self {
        let mut state = Self {
            replica: ReplicaId::new_v4(),
            shared: true,
            revision: loaded.revision,
            epoch: loaded.epoch,
            settle_at_ms: loaded.settled_at_ms.is_none().then(|| now_ms.saturating_add(ms(rules.settle))),
            rules,
            producers: BTreeMap::new(),
            collectors: loaded.collectors.into_iter().collect(),
            by_collector: BTreeMap::new(),
            instances: BTreeMap::new(),
        };
        for record in loaded.producers {
            if let Some(c) = record.assigned {
                state.by_collector.entry(c).or_default().insert(record.spec.id, entry_of(&record.spec));
            }
            state.producers.insert(record.spec.id, record);
        }
        state
    }

    /// This server's id among the replicas sharing its store.
    pub(crate) fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// The store's revision this state reflects.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// Records that the state reflects the store at `revision` (a commit of this replica's, or a catch-up).
    pub(crate) fn set_revision(&mut self, revision: u64) {
        self.revision = self.revision.max(revision);
    }

    /// Writes into the state what other replicas committed (`changes`, bringing the store to `revision`): records as
    /// they were written, the assignments they hold, the store's settling. The generations come with the records, so
    /// a collector's feed publishes exactly what its replica committed.
    pub(crate) fn catch_up(&mut self, revision: u64, changes: Batch) -> CaughtUp {
        let mut caught = CaughtUp::default();
        let Batch { upsert_producers, delete_producers, upsert_collectors, settled_at_ms, delete_collectors } = changes;
        for record in upsert_producers {
            let id = record.spec.id;
            let previous = self.producers.get(&id);
            let unchanged = previous.is_some_and(|p| p.assigned == record.assigned && p.spec == record.spec);
            if !unchanged {
                if let Some(from) = previous.and_then(|p| p.assigned)
                    && let Some(assignment) = self.by_collector.get_mut(&from)
                {
                    assignment.remove(&id);
                }
                if let Some(to) = record.assigned {
                    self.by_collector.entry(to).or_default().insert(id, entry_of(&record.spec));
                }
            }
            self.producers.insert(id, record);
        }
        for id in delete_producers {
            if let Some(from) = self.producers.remove(&id).and_then(|r| r.assigned)
                && let Some(assignment) = self.by_collector.get_mut(&from)
            {
                assignment.remove(&id);
            }
        }
        for (id, record) in upsert_collectors {
            if self.collectors.get(&id).is_none_or(|c| c.generation != record.generation) {
                caught.dirty.insert(id);
            }
            self.collectors.insert(id, record);
        }
        for id in delete_collectors {
            if self.collectors.remove(&id).is_some() {
                self.by_collector.remove(&id);
                caught.dirty.remove(&id);
                caught.forgotten.push(id);
            }
        }
        if settled_at_ms.is_some() {
            self.settle_at_ms = None;
        }
        self.set_revision(revision);
        caught
    }

    /// Replaces the state with what the store holds. A single server keeps the in-memory liveness of collectors
    /// (open streams are not in its store); a replica takes the stored one. Used after a failed commit, to drop the
    /// changes that did not reach the store, and by a replica that fell too far behind; the caller then recomputes
    /// the assignment, since liveness may differ from what the stored one was made for.
    pub(crate) fn reload(&mut self, loaded: Loaded, now_ms: u64) {
        if self.shared {
            let mut fresh = Self::join(loaded, self.rules, now_ms);
            fresh.replica = self.replica;
            fresh.settle_at_ms = fresh.settle_at_ms.map(|_| self.settle_at_ms.unwrap_or(now_ms));
            fresh.instances = std::mem::take(&mut self.instances);
            *self = fresh;
            return;
        }
        let old = std::mem::take(&mut self.collectors);
        let (mut fresh, _) = Self::from_loaded(loaded, self.rules, now_ms);
        for (id, record) in old {
            // Liveness and the kinds its stream listed describe open streams, not the store.
            let kept = fresh.collectors.entry(id).or_insert_with(|| record.clone());
            kept.liveness = record.liveness;
            kept.supported_kinds = record.supported_kinds;
            kept.holders = record.holders;
        }
        // The server kept serving: a settling store keeps its deadline, and one that settled in memory without the
        // disk recording it settles again at the next sweep.
        fresh.settle_at_ms = fresh.settle_at_ms.map(|_| self.settle_at_ms.unwrap_or(now_ms));
        fresh.instances = std::mem::take(&mut self.instances);
        fresh.replica = self.replica;
        *self = fresh;
    }

    /// The store's epoch.
    pub(crate) fn epoch(&self) -> Uuid {
        self.epoch
    }

    /// Whether the store has not yet served one settle period since it was created (see `store_settling`).
    pub(crate) fn settling(&self) -> bool {
        self.settle_at_ms.is_some()
    }

    /// When the store settles, while it is settling.
    pub(crate) fn settles_at_ms(&self) -> Option<u64> {
        self.settle_at_ms
    }

    /// Forgives `absent_ms` of time the server could not serve (a stalled process, a paused VM, a wall clock that
    /// stepped ahead), as L3 forgives a restart: every lease gets at least one renewal interval (a quarter of it)
    /// from now, every collector in grace gets its whole grace period from now (L2), and a settling store's
    /// deadline moves by the absence. Returns how many leases were extended.
    pub(crate) fn forgive_absence(&mut self, absent_ms: u64, now_ms: u64, changes: &mut Changes) -> usize {
        let mut extended = 0;
        for record in self.producers.values_mut() {
            if floor_lease(record, now_ms) {
                changes.producers.insert(record.spec.id);
                extended += 1;
            }
        }
        let grace_until = now_ms.saturating_add(ms(self.rules.grace));
        for (id, record) in &mut self.collectors {
            if let Liveness::Grace { until_ms } = &mut record.liveness
                && *until_ms < grace_until
            {
                *until_ms = grace_until;
                changes.collectors.insert(*id);
            }
        }
        if let Some(at) = &mut self.settle_at_ms {
            *at = at.saturating_add(absent_ms);
        }
        extended
    }

    /// After the wall clock stepped back, caps every deadline at what it could be if set now: a lease at its
    /// length, a grace period at its length, settling at one settle period. Without this a step back of a day
    /// would keep a dead producer's lease for a day more. Returns how many leases were cut.
    pub(crate) fn clamp_deadlines(&mut self, now_ms: u64, changes: &mut Changes) -> usize {
        let mut clamped = 0;
        for record in self.producers.values_mut() {
            let ceiling = now_ms.saturating_add(ms(record.lease));
            if record.expires_at_ms > ceiling {
                record.expires_at_ms = ceiling;
                changes.producers.insert(record.spec.id);
                clamped += 1;
            }
        }
        let grace_until = now_ms.saturating_add(ms(self.rules.grace));
        for (id, record) in &mut self.collectors {
            if let Liveness::Grace { until_ms } = &mut record.liveness
                && *until_ms > grace_until
            {
                *until_ms = grace_until;
                changes.collectors.insert(*id);
            }
        }
        if let Some(at) = &mut self.settle_at_ms {
            *at = (*at).min(now_ms.saturating_add(ms(self.rules.settle)));
        }
        clamped
    }

    /// The collector's record, if known.
    pub(crate) fn collector(&self, id: CollectorId) -> Option<&CollectorRecord> {
        self.collectors.get(&id)
    }

    /// Every known collector's id, in order.
    pub(crate) fn collector_ids(&self) -> impl Iterator<Item = CollectorId> + '_ {
        self.collectors.keys().copied()
    }

    /// Brings the store's count of this replica's streams back to `open`, the streams open here now: writes that
    /// failed while the store could not be reached may have left it wrong. A collector left with no stream anywhere
    /// enters grace (L2).
    pub(crate) fn own_streams(
        &mut self,
        open: &std::collections::HashMap<CollectorId, u32>,
        now_ms: u64,
        changes: &mut Changes,
    ) {
        let grace_until = now_ms.saturating_add(ms(self.rules.grace));
        for (id, record) in &mut self.collectors {
            let streams = open.get(id).copied().unwrap_or(0);
            if record.holders.get(&self.replica).copied().unwrap_or(0) != streams {
                record.hold(self.replica, streams, grace_until);
                changes.collectors.insert(*id);
            }
        }
    }

    /// The producer's record, if registered.
    pub(crate) fn producer(&self, id: ProducerId) -> Option<&ProducerRecord> {
        self.producers.get(&id)
    }

    /// The generation a collector rejected, if its last report rejected its current generation in this epoch
    /// (C4: such a generation is not resent).
    pub(crate) fn rejected_current(&self, id: CollectorId) -> Option<u64> {
        let c = self.collectors.get(&id)?;
        let r = c.report.as_ref()?;
        (r.epoch == self.epoch && r.generation == c.generation && matches!(r.outcome, ApplyOutcome::Rejected(_)))
            .then_some(c.generation)
    }

    /// The collector's assignment, ordered by producer id: a clone that shares everything (O(1)).
    pub(crate) fn assignment(&self, id: CollectorId) -> Assignment {
        self.by_collector.get(&id).cloned().unwrap_or_default()
    }

    /// How many producers are assigned to `id`, without walking them.
    pub(crate) fn assigned_count(&self, id: CollectorId) -> usize {
        self.by_collector.get(&id).map_or(0, Assignment::len)
    }

    /// The collectors eligible for producers of each kind: live or in grace, and supporting the kind.
    fn eligible(&self) -> Eligible {
        Eligible(ProducerKind::ALL.map(|kind| {
            self.collectors
                .iter()
                .filter(|(_, c)| c.liveness.eligible() && c.supported_kinds.contains(kind))
                .map(|(id, _)| *id)
                .collect()
        }))
    }

    /// Points `producer` at `to`, keeping `by_collector` in step and marking both ends dirty. `entry` is the
    /// producer's snapshot entry when the caller has just made it; otherwise it moves with the producer (or is
    /// made, for a producer that was unassigned).
    fn set_assignment(
        &mut self,
        producer: ProducerId,
        to: Option<CollectorId>,
        entry: Option<Entry>,
        changes: &mut Changes,
    ) {
        let Some(record) = self.producers.get_mut(&producer) else { return };
        let from = record.assigned;
        if from == to {
            return;
        }
        record.assigned = to;
        let mut moved = None;
        if let Some(from) = from {
            if let Some(assignment) = self.by_collector.get_mut(&from) {
                moved = assignment.remove(&producer);
            }
            changes.dirty.insert(from);
        }
        if let Some(to) = to {
            let entry = entry.or(moved).unwrap_or_else(|| entry_of(&record.spec));
            self.by_collector.entry(to).or_default().insert(producer, entry);
            changes.dirty.insert(to);
        }
        changes.producers.insert(producer);
    }

    /// Registers or renews a producer (R1: an upsert). The registration replaces everything its registrant says
    /// (spec and lease), never the operator pin.
    pub(crate) fn register(&mut self, registration: Registration, now_ms: u64, changes: &mut Changes) -> Registered {
        let Registration { spec, lease } = registration;
        let lease = lease.unwrap_or(self.rules.default_lease);
        let expires_at_ms = now_ms.saturating_add(ms(lease));
        let id = spec.id;
        changes.producers.insert(id);
        let entry = entry_of(&spec);
        let created = match self.producers.get_mut(&id) {
            Some(record) => {
                record.spec = spec;
                record.lease = lease;
                record.expires_at_ms = expires_at_ms;
                // Only what the collector is sent counts as a change of its assignment: a renewal is none.
                if let Some(owner) = record.assigned {
                    let assignment = self.by_collector.entry(owner).or_default();
                    if assignment.get(&id) != Some(&entry) {
                        assignment.insert(id, entry.clone());
                        changes.dirty.insert(owner);
                    }
                }
                false
            }
            None => {
                self.producers.insert(
                    id,
                    ProducerRecord {
                        spec,
                        lease,
                        expires_at_ms,
                        registered_at_ms: now_ms,
                        assigned: None,
                        operator_pin: None,
                    },
                );
                true
            }
        };
        let record = &self.producers[&id];
        let to = assign::assign(id, record.pin(), self.eligible().of(&record.spec));
        self.set_assignment(id, to, Some(entry), changes);
        Registered { record: self.producers[&id].clone(), created }
    }

    /// Sets or clears a producer's operator pin, and nothing else, moving the producer if the pin in force now
    /// says so. Returns the record and whether the pin changed, or `None` when the producer is not registered.
    pub(crate) fn set_operator_pin(
        &mut self,
        change: PinChange,
        changes: &mut Changes,
    ) -> Option<(ProducerRecord, bool)> {
        let record = self.producers.get_mut(&change.producer)?;
        let changed = record.operator_pin != change.collector;
        if changed {
            record.operator_pin = change.collector;
            changes.producers.insert(change.producer);
            let record = &self.producers[&change.producer];
            let to = assign::assign(change.producer, record.pin(), self.eligible().of(&record.spec));
            self.set_assignment(change.producer, to, None, changes);
        }
        Some((self.producers[&change.producer].clone(), changed))
    }

    /// Removes a producer; returns whether it existed (R1: absent is not an error).
    pub(crate) fn deregister(&mut self, id: ProducerId, changes: &mut Changes) -> bool {
        let Some(record) = self.producers.remove(&id) else { return false };
        if let Some(owner) = record.assigned {
            if let Some(assignment) = self.by_collector.get_mut(&owner) {
                assignment.remove(&id);
            }
            changes.dirty.insert(owner);
        }
        changes.producers.insert(id);
        true
    }

    /// Moves every producer to where the rules say it belongs now.
    fn recompute(&mut self, changes: &mut Changes) {
        let eligible = self.eligible();
        let moves: Vec<_> = self
            .producers
            .values()
            .filter_map(|r| {
                let to = assign::assign(r.spec.id, r.pin(), eligible.of(&r.spec));
                (to != r.assigned).then_some((r.spec.id, to))
            })
            .collect();
        for (producer, to) in moves {
            self.set_assignment(producer, to, None, changes);
        }
    }

    /// Recomputes every assignment (after a failed commit dropped one that liveness called for).
    pub(crate) fn force_recompute(&mut self, changes: &mut Changes) {
        self.recompute(changes);
    }

    /// A feed stream of `id`, from process `instance` if it said, collecting producers of `kinds`, opened (S1).
    /// Returns whether the collector was not known before. The stream's `kinds` replace the collector's: when they
    /// differ, producers of the kinds concerned move to or from it.
    ///
    /// # Errors
    /// A [`Conflict`] when streams of another instance of `id` are open: the newer process is refused (and
    /// remembered for [`CONFLICT_SHOWN_FOR`]), nothing else changes. Streams of one instance are never refused.
    pub(crate) fn attach(
        &mut self,
        id: CollectorId,
        known: Option<(Uuid, u64)>,
        instance: Option<Uuid>,
        kinds: SupportedKinds,
        now_ms: u64,
        changes: &mut Changes,
    ) -> Result<bool, Conflict> {
        if let Some(instance) = instance {
            let instances = self.instances.entry(id).or_default();
            if let Some(running) = instances.open.keys().copied().find(|open| *open != instance) {
                let shown_since = now_ms.saturating_sub(ms(CONFLICT_SHOWN_FOR));
                instances.refused.retain(|_, at| *at > shown_since);
                if instances.refused.len() >= MAX_REFUSED_REMEMBERED && !instances.refused.contains_key(&instance) {
                    let oldest = instances.refused.iter().min_by_key(|(_, at)| **at).map(|(i, _)| *i);
                    if let Some(oldest) = oldest {
                        instances.refused.remove(&oldest);
                    }
                }
                instances.refused.insert(instance, now_ms);
                return Err(Conflict { collector: id, running, refused: instance });
            }
            instances.refused.remove(&instance);
            *instances.open.entry(instance).or_default() += 1;
        }
        let mut created = false;
        let epoch = self.epoch;
        let record = self.collectors.entry(id).or_insert_with(|| {
            created = true;
            CollectorRecord::new()
        });
        let was_eligible = record.liveness.eligible();
        let kinds_changed = record.supported_kinds != kinds;
        // Its streams are counted in the record, for the replicas that share the store.
        changes.collectors.insert(id);
        record.supported_kinds = kinds;
        record.stream_opened(self.replica);
        // A collector that claims a generation this epoch never reached (a copied data directory, say) would
        // ignore every snapshot up to it (C3); jump past it instead.
        if let Some((known_epoch, known_generation)) = known
            && known_epoch == epoch
            && known_generation > record.generation
        {
            record.generation = known_generation;
            changes.dirty.insert(id);
        }
        if !was_eligible || kinds_changed {
            self.recompute(changes);
        }
        Ok(created)
    }

    /// A feed stream of `id` (from process `instance`, if it said) closed; the collector enters grace when it was
    /// the last one (L2).
    pub(crate) fn detach(&mut self, id: CollectorId, instance: Option<Uuid>, now_ms: u64, changes: &mut Changes) {
        if let Some(instance) = instance {
            self.release_instance(id, instance);
        }
        let grace_until = now_ms.saturating_add(ms(self.rules.grace));
        if let Some(record) = self.collectors.get_mut(&id) {
            record.stream_closed(self.replica, grace_until);
            changes.collectors.insert(id);
        }
    }

    /// One stream of process `instance` of `id` is no longer open: it closed, or it was never answered (a replica's
    /// attach whose commit failed). Once none is, another process of `id` may open its own.
    pub(crate) fn release_instance(&mut self, id: CollectorId, instance: Uuid) {
        if let Some(instances) = self.instances.get_mut(&id)
            && let Some(open) = instances.open.get_mut(&instance)
        {
            *open -= 1;
            if *open == 0 {
                instances.open.remove(&instance);
            }
            if instances.open.is_empty() && instances.refused.is_empty() {
                self.instances.remove(&id);
            }
        }
    }

    /// Closes the streams that replicas no longer `alive` held (they died, or lost the store): their collectors enter
    /// grace when no other replica holds one of their streams (L2), so nothing moves unless they stay away. Returns
    /// the collectors whose streams were closed.
    pub(crate) fn keep_holders(&mut self, alive: &[ReplicaId], now_ms: u64, changes: &mut Changes) -> Vec<CollectorId> {
        let grace_until = now_ms.saturating_add(ms(self.rules.grace));
        let mut closed = Vec::new();
        for (id, record) in &mut self.collectors {
            if record.keep_holders(|replica| alive.contains(replica), grace_until) {
                changes.collectors.insert(*id);
                closed.push(*id);
            }
        }
        closed
    }

    /// Records a collector's report (C4). Returns whether it was about the current generation, or `None` when
    /// the collector is unknown.
    pub(crate) fn report(&mut self, report: ApplyReport, now_ms: u64, changes: &mut Changes) -> Option<bool> {
        let epoch = self.epoch;
        let record = self.collectors.get_mut(&report.collector)?;
        let current = report.epoch == epoch && report.generation == record.generation;
        // A collector reports each generation as it applies it, on calls of their own: a report of an older
        // generation of the same epoch can arrive after a newer one (its first attempt failed, or it was slower).
        // It says nothing new and must not hide the newer one.
        if let Some(kept) = &record.report
            && kept.epoch == report.epoch
            && kept.generation > report.generation
        {
            return Some(current);
        }
        record.report = Some(StoredReport {
            epoch: report.epoch,
            generation: report.generation,
            outcome: report.outcome,
            at_ms: now_ms,
        });
        changes.collectors.insert(report.collector);
        Some(current)
    }

    /// Applies the rules of time: lapsed leases (L1), ended grace periods (L2), and the end of the store's
    /// settling period. Returns the producers whose lease lapsed and the collectors that departed.
    pub(crate) fn sweep(&mut self, now_ms: u64, changes: &mut Changes) -> (Vec<ProducerId>, Vec<CollectorId>) {
        let lapsed: Vec<_> = self.producers.values().filter(|r| r.expires_at_ms <= now_ms).map(|r| r.spec.id).collect();
        for id in &lapsed {
            self.deregister(*id, changes);
        }
        let mut departed = Vec::new();
        for (id, record) in &mut self.collectors {
            if let Liveness::Grace { until_ms } = record.liveness
                && until_ms <= now_ms
            {
                record.liveness = Liveness::Departed { since_ms: until_ms };
                changes.collectors.insert(*id);
                departed.push(*id);
            }
        }
        if !departed.is_empty() {
            self.recompute(changes);
        }
        if self.settle_at_ms.is_some_and(|at| now_ms >= at) {
            // Snapshots sent so far said "settling"; give every collector a settled one, and remember (durably)
            // that the store settled, so a restart does not settle it again. Departed collectors too: one that is
            // away now, with no producer whose move would change its generation, would otherwise come back to its
            // old generation, be told it is in sync, and keep carrying the producers of the old store forever.
            self.settle_at_ms = None;
            changes.settled_at_ms = Some(now_ms);
            changes.dirty.extend(self.collectors.keys().copied());
        }
        (lapsed, departed)
    }

    /// Forgets every collector departed for [`Rules::forget_after`] or longer; returns them.
    pub(crate) fn forget_departed(&mut self, now_ms: u64, changes: &mut Changes) -> Vec<CollectorId> {
        let forget_after = ms(self.rules.forget_after);
        let due: Vec<_> = self
            .collectors
            .iter()
            .filter(|(_, c)| c.departed_at_ms().is_some_and(|since| since.saturating_add(forget_after) <= now_ms))
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.remove_collector(*id, changes);
        }
        due
    }

    /// Forgets a departed collector (an operator's `ForgetCollector`). Returns whether it was known, or, for a
    /// collector that is live or in grace, its liveness (it is kept).
    pub(crate) fn forget(&mut self, id: CollectorId, changes: &mut Changes) -> Result<bool, Liveness> {
        match self.collectors.get(&id).map(|c| c.liveness) {
            None => Ok(false),
            Some(Liveness::Departed { .. }) => {
                self.remove_collector(id, changes);
                Ok(true)
            }
            Some(kept) => Err(kept),
        }
    }

    /// Removes a departed collector's record. A departed collector has no producers (none is assigned to an
    /// ineligible collector), so no assignment changes.
    fn remove_collector(&mut self, id: CollectorId, changes: &mut Changes) {
        self.collectors.remove(&id);
        self.by_collector.remove(&id);
        // It may have lost its producers earlier in this batch: no generation to bump for a forgotten record.
        changes.dirty.remove(&id);
        changes.collectors.insert(id);
    }

    /// Bumps the generation of every collector whose assignment changed, and gathers what must be written.
    /// Returns the batch and the collectors whose snapshot must be published once it is committed.
    pub(crate) fn finish(&mut self, changes: Changes) -> (Batch, BTreeSet<CollectorId>) {
        let Changes { producers, mut collectors, dirty, settled_at_ms } = changes;
        for id in &dirty {
            let record = self.collectors.entry(*id).or_insert_with(CollectorRecord::new);
            // Claims are bounded at the edge (`MAX_GENERATION`), so this never saturates in practice.
            record.generation = record.generation.saturating_add(1);
            collectors.insert(*id);
        }
        let mut batch = Batch { settled_at_ms, ..Batch::default() };
        for id in producers {
            match self.producers.get(&id) {
                Some(record) => batch.upsert_producers.push(record.clone()),
                None => batch.delete_producers.push(id),
            }
        }
        for id in collectors {
            match self.collectors.get(&id) {
                Some(record) => batch.upsert_collectors.push((id, record.clone())),
                None => batch.delete_collectors.push(id),
            }
        }
        (batch, dirty)
    }

    /// One page of producers, in id order.
    pub(crate) fn list_producers(&self, query: &ProducerQuery) -> ProducerPage {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = query.after.map_or(Unbounded, Excluded);
        let size = query.page_size as usize;
        let (mut producers, total): (Vec<ProducerRecord>, u64) = match query.collector {
            None => (
                self.producers.range((lower, Unbounded)).take(size + 1).map(|(_, r)| r.clone()).collect(),
                self.producers.len() as u64,
            ),
            Some(c) => {
                let assignment = self.by_collector.get(&c);
                (
                    assignment
                        .into_iter()
                        .flat_map(|a| a.ids_from(lower))
                        .take(size + 1)
                        .filter_map(|id| self.producers.get(&id).cloned())
                        .collect(),
                    assignment.map_or(0, |a| a.len() as u64),
                )
            }
        };
        let next_after = (producers.len() > size).then(|| {
            producers.truncate(size);
            producers.last().map(|r| r.spec.id)
        });
        ProducerPage { producers, next_after: next_after.flatten(), total }
    }

    /// Every known collector, in id order, as of `now_ms`.
    pub(crate) fn list_collectors(&mut self, now_ms: u64) -> Vec<CollectorView> {
        let shown_since = now_ms.saturating_sub(ms(CONFLICT_SHOWN_FOR));
        for instances in self.instances.values_mut() {
            instances.refused.retain(|_, at| *at > shown_since);
        }
        self.instances.retain(|_, i| !i.open.is_empty() || !i.refused.is_empty());
        self.collectors
            .iter()
            .map(|(id, record)| {
                let instances = self.instances.get(id);
                let distinct: BTreeSet<Uuid> =
                    instances.into_iter().flat_map(|i| i.open.keys().chain(i.refused.keys())).copied().collect();
                let conflict = instances.filter(|_| distinct.len() > 1).map(|i| ConflictView {
                    running: i.open.keys().next().copied(),
                    refused: i.refused.keys().copied().collect(),
                    last_refused_at_ms: i.refused.values().copied().max().unwrap_or(0),
                });
                CollectorView {
                    id: *id,
                    record: record.clone(),
                    assigned: self.by_collector.get(id).map_or(0, Assignment::len),
                    converged: record.report.as_ref().is_some_and(|r| {
                        r.epoch == self.epoch
                            && r.generation == record.generation
                            && matches!(r.outcome, ApplyOutcome::Applied)
                    }),
                    instances: distinct.len(),
                    conflict,
                    forget_at_ms: record
                        .departed_at_ms()
                        .map(|since| since.saturating_add(ms(self.rules.forget_after))),
                }
            })
            .collect()
    }

    /// Checks the state's invariants; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let eligible = self.eligible();
        for (id, r) in &self.producers {
            let eligible = eligible.of(&r.spec);
            match r.assigned {
                Some(c) => {
                    assert!(eligible.contains(&c), "{id} assigned to ineligible {c}");
                    assert_eq!(self.by_collector[&c].get(id), Some(&entry_of(&r.spec)), "{id}'s entry");
                }
                None => assert!(eligible.is_empty(), "{id} unassigned while collectors are eligible"),
            }
            assert_eq!(r.assigned, assign::assign(*id, r.pin(), eligible), "{id} not where the rules say");
        }
        for (c, assignment) in &self.by_collector {
            for p in assignment.ids_from(std::ops::Bound::Unbounded) {
                assert_eq!(self.producers[&p].assigned, Some(*c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use roster::domain::{Collection, Labels, ProducerAddress, PrometheusTarget};

    use super::*;

    const RULES: Rules = Rules {
        default_lease: Duration::from_secs(60),
        grace: Duration::from_secs(10),
        settle: Duration::from_secs(15),
        forget_after: Duration::from_secs(100),
    };

    fn empty(now_ms: u64) -> State {
        let loaded = Loaded {
            epoch: Uuid::from_u128(7),
            revision: 0,
            settled_at_ms: None,
            producers: vec![],
            collectors: vec![],
        };
        State::from_loaded(loaded, RULES, now_ms).0
    }

    fn registration(p: u8, port: u16, pin: Option<u8>) -> Registration {
        Registration {
            spec: ProducerSpec {
                id: ProducerId(Uuid::from_u128(u128::from(p) + 1000)),
                address: ProducerAddress::parse_field("address", &format!("127.0.0.1:{port}")).expect("valid"),
                interval: Duration::from_secs(1),
                labels: Labels::default(),
                pinned: pin.map(collector),
                collection: Collection::Grpc,
            },
            lease: None,
        }
    }

    /// A Prometheus-kind registration of producer `p`.
    fn prometheus(p: u8) -> Registration {
        let mut registration = registration(p, 1, None);
        registration.spec.collection = Collection::Prometheus(PrometheusTarget::default());
        registration
    }

    /// A stream of collector `c` listing every kind (`true`) or gRPC only.
    fn kinds(all: bool) -> SupportedKinds {
        if all { SupportedKinds::ALL } else { SupportedKinds::GRPC_ONLY }
    }

    fn collector(c: u8) -> CollectorId {
        CollectorId(Uuid::from_u128(u128::from(c)))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Register { producer: u8, port: u16, pin: Option<u8>, prometheus: bool },
        Deregister(u8),
        Pin { producer: u8, pin: Option<u8> },
        Attach(u8, bool),
        Detach(u8),
        Forget(u8),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..20, 1u16..4, prop::option::of(0u8..5), any::<bool>())
                .prop_map(|(producer, port, pin, prometheus)| Op::Register { producer, port, pin, prometheus }),
            (0u8..20).prop_map(Op::Deregister),
            (0u8..20, prop::option::of(0u8..5)).prop_map(|(producer, pin)| Op::Pin { producer, pin }),
            (0u8..5, any::<bool>()).prop_map(|(c, all)| Op::Attach(c, all)),
            (0u8..5).prop_map(Op::Detach),
            (0u8..5).prop_map(Op::Forget),
            (0u64..40_000).prop_map(Op::Advance),
        ]
    }

    type Assignments = BTreeMap<CollectorId, Vec<Entry>>;

    fn assignments(state: &State) -> Assignments {
        state.collectors.keys().map(|c| (*c, state.assignment(*c).entries().cloned().collect())).collect()
    }

    proptest! {
        /// For any sequence of operations, batched arbitrarily: generations never go down; a collector whose
        /// assignment changed got a newer generation; and every producer sits where the rules say.
        #[test]
        fn generations_only_increase_and_track_every_change(
            batches in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..40),
        ) {
            let mut state = empty(0);
            let mut now = 0u64;
            let mut streams: BTreeMap<u8, u32> = BTreeMap::new();
            for batch in batches {
                let before = assignments(&state);
                let generations: BTreeMap<_, _> = state.collectors.iter().map(|(c, r)| (*c, r.generation)).collect();
                let mut changes = Changes::default();
                let mut forgotten = BTreeSet::new();
                for op in batch {
                    match op {
                        Op::Register { producer, port, pin, prometheus: kind } => {
                            let mut registration = registration(producer, port, pin);
                            if kind {
                                registration.spec.collection = prometheus(producer).spec.collection;
                            }
                            state.register(registration, now, &mut changes);
                        }
                        Op::Deregister(p) => { state.deregister(registration(p, 1, None).spec.id, &mut changes); }
                        Op::Pin { producer, pin } => {
                            let change = PinChange { producer: registration(producer, 1, None).spec.id, collector: pin.map(collector) };
                            state.set_operator_pin(change, &mut changes);
                        }
                        Op::Attach(c, all) => { *streams.entry(c).or_default() += 1; state.attach(collector(c), None, None, kinds(all), now, &mut changes).unwrap(); }
                        Op::Detach(c) => {
                            if let Some(n) = streams.get_mut(&c).filter(|n| **n > 0) {
                                *n -= 1;
                                state.detach(collector(c), None, now, &mut changes);
                            }
                        }
                        Op::Forget(c) => {
                            if state.forget(collector(c), &mut changes) == Ok(true) {
                                prop_assert_eq!(streams.get(&c).copied().unwrap_or(0), 0, "a collector with a stream was forgotten");
                                forgotten.insert(collector(c));
                            }
                        }
                        Op::Advance(by) => {
                            now += by;
                            state.sweep(now, &mut changes);
                            forgotten.extend(state.forget_departed(now, &mut changes));
                        }
                    }
                }
                let (_batch, dirty) = state.finish(changes);
                state.check_invariants();
                let after = assignments(&state);
                // A collector forgotten in this batch may be back as a new record, its generations starting over.
                for (c, record) in state.collectors.iter().filter(|(c, _)| !forgotten.contains(*c)) {
                    let old = generations.get(c).copied().unwrap_or(0);
                    prop_assert!(record.generation >= old);
                    let changed = before.get(c).map_or(!after[c].is_empty(), |b| b != &after[c]);
                    if changed {
                        prop_assert!(record.generation > old, "{c} changed without a new generation");
                        prop_assert!(dirty.contains(c));
                    }
                }
            }
        }
    }

    #[test]
    fn leases_lapse_and_restart_gives_a_renewal_interval() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        let mut reg = registration(1, 1, None);
        reg.lease = Some(Duration::from_secs(40));
        state.register(reg, 0, &mut changes);
        let (lapsed, _) = state.sweep(39_999, &mut changes);
        assert!(lapsed.is_empty());
        let (lapsed, _) = state.sweep(40_000, &mut changes);
        assert_eq!(lapsed.len(), 1);
        assert!(state.producers.is_empty());

        // A record whose lease ran out during a downtime gets a quarter of its lease from the restart.
        let mut record = state.register(registration(2, 1, None), 0, &mut changes).record;
        record.expires_at_ms = 1_000;
        let loaded = Loaded {
            epoch: Uuid::from_u128(7),
            revision: 0,
            settled_at_ms: None,
            producers: vec![record],
            collectors: vec![],
        };
        let restart = 10 * 3_600_000;
        let (mut state, changes) = State::from_loaded(loaded, RULES, restart);
        assert_eq!(changes.producers.len(), 1, "the extension is persisted");
        let mut changes = Changes::default();
        assert!(state.sweep(restart + 14_999, &mut changes).0.is_empty());
        assert_eq!(state.sweep(restart + 15_000, &mut changes).0.len(), 1);
    }

    #[test]
    fn a_collector_stays_eligible_through_grace_then_departs() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        state.attach(collector(1), None, None, SupportedKinds::GRPC_ONLY, 0, &mut changes).unwrap();
        state.register(registration(1, 1, None), 0, &mut changes);
        assert_eq!(state.producer(registration(1, 1, None).spec.id).and_then(|r| r.assigned), Some(collector(1)));
        state.detach(collector(1), None, 1_000, &mut changes);
        state.sweep(10_999, &mut changes);
        assert_eq!(state.producer(registration(1, 1, None).spec.id).and_then(|r| r.assigned), Some(collector(1)));
        let (_, departed) = state.sweep(11_000, &mut changes);
        assert_eq!(departed, vec![collector(1)]);
        assert_eq!(state.producer(registration(1, 1, None).spec.id).and_then(|r| r.assigned), None);
    }

    #[test]
    fn an_operator_pin_outlives_registrations_and_changes_nothing_else() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        for c in 1..=3 {
            state.attach(collector(c), None, None, SupportedKinds::GRPC_ONLY, 0, &mut changes).unwrap();
        }
        let id = registration(1, 1, None).spec.id;
        let unpinned = state.register(registration(1, 1, None), 0, &mut changes).record;
        let rendezvous = unpinned.assigned.expect("assigned");
        let target = (1..=3).map(collector).find(|c| *c != rendezvous).expect("another collector");

        let pin = PinChange { producer: id, collector: Some(target) };
        let (pinned, changed) = state.set_operator_pin(pin, &mut changes).expect("registered");
        assert!(changed);
        assert_eq!(pinned.assigned, Some(target));
        assert_eq!(pinned, ProducerRecord { operator_pin: Some(target), assigned: Some(target), ..unpinned.clone() });
        assert!(!state.set_operator_pin(pin, &mut changes).expect("registered").1, "setting it again is a no-op");

        // Renewals, with no registrant's pin or another one, keep the operator pin and the assignment.
        let elsewhere = (1..=3).map(collector).find(|c| *c != target).expect("a third collector");
        for (at, registrant_pin) in [(1_000, None), (2_000, Some(elsewhere)), (3_000, None)] {
            let mut renewal = registration(1, 1, None);
            renewal.spec.pinned = registrant_pin;
            let record = state.register(renewal, at, &mut changes).record;
            assert_eq!((record.operator_pin, record.assigned), (Some(target), Some(target)), "renewal at {at}");
        }
        state.check_invariants();

        // Clearing it puts the registrant's pin (none here) back in force: rendezvous again.
        let (cleared, _) = state.set_operator_pin(PinChange { producer: id, collector: None }, &mut changes).unwrap();
        assert_eq!((cleared.operator_pin, cleared.assigned), (None, Some(rendezvous)));
        let unknown = PinChange { producer: registration(9, 1, None).spec.id, collector: Some(target) };
        assert!(state.set_operator_pin(unknown, &mut changes).is_none());
    }

    #[test]
    fn departed_collectors_are_forgotten_after_the_stated_time_or_on_request_never_before() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        state.attach(collector(1), None, None, SupportedKinds::GRPC_ONLY, 0, &mut changes).unwrap();
        state.attach(collector(2), None, None, SupportedKinds::GRPC_ONLY, 0, &mut changes).unwrap();
        state.register(registration(1, 1, Some(1)), 0, &mut changes);
        assert_eq!(state.forget(collector(1), &mut changes), Err(Liveness::Live { streams: 1 }));
        state.detach(collector(1), None, 1_000, &mut changes);
        assert_eq!(state.forget(collector(1), &mut changes), Err(Liveness::Grace { until_ms: 11_000 }));
        state.sweep(11_000, &mut changes);
        assert_eq!(state.collector(collector(1)).map(|c| c.liveness), Some(Liveness::Departed { since_ms: 11_000 }));
        let (batch, _) = state.finish(std::mem::take(&mut changes));
        assert!(batch.upsert_collectors.iter().any(|(id, _)| *id == collector(1)), "the departure is persisted");

        assert!(state.forget_departed(110_999, &mut changes).is_empty(), "kept until 100 s after departing");
        assert_eq!(state.forget_departed(111_000, &mut changes), vec![collector(1)]);
        assert!(state.collector(collector(1)).is_none());
        let (batch, dirty) = state.finish(std::mem::take(&mut changes));
        assert_eq!(batch.delete_collectors, vec![collector(1)]);
        assert!(dirty.is_empty());
        state.check_invariants();

        // By request: at once once departed; a collector it does not know is no error (R1).
        state.detach(collector(2), None, 200_000, &mut changes);
        state.sweep(210_000, &mut changes);
        assert_eq!(state.forget(collector(2), &mut changes), Ok(true));
        assert_eq!(state.forget(collector(2), &mut changes), Ok(false));
        assert!(state.list_collectors(0).is_empty());

        // A collector live when the store was last written, without producers, departs at the load.
        let loaded = Loaded {
            epoch: Uuid::from_u128(7),
            revision: 0,
            settled_at_ms: None,
            producers: vec![],
            collectors: vec![(collector(3), CollectorRecord::restored(4, None, None, SupportedKinds::GRPC_ONLY))],
        };
        let (mut state, _) = State::from_loaded(loaded, RULES, 500_000);
        assert_eq!(state.collector(collector(3)).map(|c| c.liveness), Some(Liveness::Departed { since_ms: 500_000 }));
        assert!(state.forget_departed(599_999, &mut changes).is_empty());
        assert_eq!(state.forget_departed(600_000, &mut changes), vec![collector(3)]);
    }

    #[test]
    fn a_second_process_with_the_same_id_is_refused_and_shown_while_the_first_keeps_its_feed() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        let (first, copy) = (Some(Uuid::from_u128(1)), Some(Uuid::from_u128(2)));
        state.attach(collector(1), None, first, SupportedKinds::GRPC_ONLY, 0, &mut changes).unwrap();
        let refused =
            state.attach(collector(1), None, copy, SupportedKinds::GRPC_ONLY, 1_000, &mut changes).unwrap_err();
        assert_eq!(
            refused,
            Conflict { collector: collector(1), running: Uuid::from_u128(1), refused: Uuid::from_u128(2) }
        );
        assert_eq!(state.collector(collector(1)).unwrap().liveness, Liveness::Live { streams: 1 }, "nothing changed");

        // The same process reconnecting before its old stream was noticed dead is no conflict.
        state.attach(collector(1), None, first, SupportedKinds::GRPC_ONLY, 2_000, &mut changes).unwrap();
        assert_eq!(state.collector(collector(1)).unwrap().liveness, Liveness::Live { streams: 2 });
        // Neither is an observer that gives no instance id.
        state.attach(collector(1), None, None, SupportedKinds::GRPC_ONLY, 2_000, &mut changes).unwrap();

        let view = &state.list_collectors(3_000)[0];
        assert_eq!(view.instances, 2);
        let conflict = view.conflict.clone().expect("shown");
        assert_eq!(
            (conflict.running, conflict.refused, conflict.last_refused_at_ms),
            (first, vec![Uuid::from_u128(2)], 1_000)
        );

        // Once the first process is gone for good, the copy is accepted; the conflict is no longer shown.
        for _ in 0..3 {
            state.detach(collector(1), first, 4_000, &mut changes);
        }
        state.detach(collector(1), None, 4_000, &mut changes);
        state.attach(collector(1), None, copy, SupportedKinds::GRPC_ONLY, 5_000, &mut changes).unwrap();
        let view = &state.list_collectors(5_000)[0];
        assert_eq!((view.instances, view.conflict.is_none()), (1, true));

        // However many processes are refused, only the latest few are remembered.
        for n in 0..100u128 {
            state
                .attach(
                    collector(1),
                    None,
                    Some(Uuid::from_u128(1000 + n)),
                    SupportedKinds::GRPC_ONLY,
                    5_500,
                    &mut changes,
                )
                .unwrap_err();
        }
        assert_eq!(state.instances[&collector(1)].refused.len(), MAX_REFUSED_REMEMBERED);
        state.instances.get_mut(&collector(1)).unwrap().refused.clear();

        // A refusal is shown for CONFLICT_SHOWN_FOR, then forgotten.
        state.attach(collector(1), None, first, SupportedKinds::GRPC_ONLY, 6_000, &mut changes).unwrap_err();
        assert_eq!(state.list_collectors(6_000 + ms(CONFLICT_SHOWN_FOR) - 1)[0].instances, 2);
        assert_eq!(state.list_collectors(6_000 + ms(CONFLICT_SHOWN_FOR))[0].instances, 1);
    }

    #[test]
    fn a_producer_goes_only_to_a_collector_that_supports_its_kind() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        let id = prometheus(1).spec.id;
        let assigned = |state: &State| state.producer(id).and_then(|r| r.assigned);
        // Only a gRPC collector: the Prometheus producer stays unassigned, a gRPC one is assigned.
        state.attach(collector(1), None, None, kinds(false), 0, &mut changes).unwrap();
        state.register(prometheus(1), 0, &mut changes);
        state.register(registration(2, 1, None), 0, &mut changes);
        assert_eq!(assigned(&state), None);
        assert_eq!(state.producer(registration(2, 1, None).spec.id).and_then(|r| r.assigned), Some(collector(1)));
        // A pin to a collector that does not support the kind is ignored, as one to an ineligible collector.
        state.set_operator_pin(PinChange { producer: id, collector: Some(collector(1)) }, &mut changes);
        assert_eq!(assigned(&state), None);
        state.check_invariants();

        // A collector that lists the kind takes it, pin or not.
        state.attach(collector(2), None, None, kinds(true), 0, &mut changes).unwrap();
        assert_eq!(assigned(&state), Some(collector(2)));
        let (_, dirty) = state.finish(std::mem::take(&mut changes));
        assert!(dirty.contains(&collector(2)));
        state.check_invariants();

        // The first collector reconnects listing the kind: the pin is honoured now.
        state.attach(collector(1), None, None, kinds(true), 1, &mut changes).unwrap();
        assert_eq!(assigned(&state), Some(collector(1)));
        let (batch, _) = state.finish(std::mem::take(&mut changes));
        assert!(
            batch.upsert_collectors.iter().any(|(c, r)| *c == collector(1) && r.supported_kinds == SupportedKinds::ALL),
            "the new kinds are persisted"
        );
        // ... and back to gRPC only (an older binary): the producer leaves it.
        state.attach(collector(1), None, None, kinds(false), 2, &mut changes).unwrap();
        assert_eq!(assigned(&state), Some(collector(2)));
        state.check_invariants();

        // Re-registered as gRPC, it may go to either.
        state.register(registration(1, 1, None), 3, &mut changes);
        assert_eq!(assigned(&state), Some(collector(1)), "its operator pin is honoured now");
        state.check_invariants();
    }

    /// A report of an older generation that arrives after a newer one's (two calls racing) keeps the newer one.
    #[test]
    fn a_late_report_of_an_older_generation_does_not_hide_the_newer_one() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        state.attach(collector(1), None, None, kinds(false), 0, &mut changes).unwrap();
        let report = |generation| ApplyReport {
            collector: collector(1),
            epoch: Uuid::from_u128(7),
            generation,
            outcome: ApplyOutcome::Applied,
        };
        assert_eq!(state.report(report(3), 1, &mut changes), Some(false));
        assert_eq!(state.report(report(2), 2, &mut changes), Some(false));
        let kept = state.collector(collector(1)).unwrap().report.clone().unwrap();
        assert_eq!((kept.generation, kept.at_ms), (3, 1), "the newer report stands");
        // Another epoch's report is news, whatever its generation.
        let other = ApplyReport { epoch: Uuid::from_u128(8), ..report(1) };
        state.report(other, 3, &mut changes);
        assert_eq!(state.collector(collector(1)).unwrap().report.as_ref().unwrap().epoch, Uuid::from_u128(8));
    }

    /// Two replicas on one store, each deciding its own batches and catching up with the other's: after every
    /// batch both hold the same records, assignments and generations, a collector's streams count for the replica
    /// holding them, and the streams of a replica that is gone close into grace (L2) without moving anything.
    #[test]
    fn replicas_catching_up_with_each_other_hold_one_state() {
        let store = || Loaded {
            epoch: Uuid::from_u128(7),
            revision: 0,
            settled_at_ms: None,
            producers: vec![],
            collectors: vec![],
        };
        let (mut a, mut b) = (State::join(store(), RULES, 0), State::join(store(), RULES, 0));
        let mut revision = 0;
        // What `from` commits, `to` catches up with; returns the collectors `to` publishes.
        let mut commit = |from: &mut State, to: &mut State, changes: Changes| {
            let (batch, dirty) = from.finish(changes);
            revision += 1;
            from.set_revision(revision);
            let caught = to.catch_up(revision, batch);
            assert_eq!(caught.dirty, dirty, "the other replica publishes the same generations");
            for state in [&*from, &*to] {
                state.check_invariants();
            }
            assert_eq!(from.producers, to.producers);
            assert_eq!(from.collectors, to.collectors);
            for c in [collector(1), collector(2)] {
                assert_eq!(
                    from.assignment(c).ids_from(std::ops::Bound::Unbounded).collect::<Vec<_>>(),
                    to.assignment(c).ids_from(std::ops::Bound::Unbounded).collect::<Vec<_>>()
                );
            }
            caught
        };

        let mut changes = Changes::default();
        a.attach(collector(1), None, None, kinds(false), 0, &mut changes).unwrap();
        for p in 0..20 {
            a.register(registration(p, 1, None), 0, &mut changes);
        }
        commit(&mut a, &mut b, changes);
        assert_eq!(b.collector(collector(1)).unwrap().holders, BTreeMap::from([(a.replica(), 1)]));

        // The second collector's stream opens on the other replica: producers move, both replicas agree.
        let mut changes = Changes::default();
        b.attach(collector(2), None, None, kinds(false), 10, &mut changes).unwrap();
        let caught = commit(&mut b, &mut a, changes);
        assert!(caught.dirty.contains(&collector(1)) && caught.dirty.contains(&collector(2)), "{caught:?}");
        assert!(a.assigned_count(collector(1)) > 0 && a.assigned_count(collector(2)) > 0);

        // A renewal changes no assignment: nothing to publish on either replica.
        let mut changes = Changes::default();
        b.register(registration(3, 1, None), 20, &mut changes);
        assert!(commit(&mut b, &mut a, changes).dirty.is_empty());

        // Replica `b` is gone: the replica that leads closes its streams; its collector is in grace and keeps its
        // producers.
        let before = a.assigned_count(collector(2));
        let mut changes = Changes::default();
        assert_eq!(a.keep_holders(&[a.replica()], 30, &mut changes), vec![collector(2)]);
        assert_eq!(a.collector(collector(2)).unwrap().liveness, Liveness::Grace { until_ms: 30 + ms(RULES.grace) });
        commit(&mut a, &mut b, changes);
        assert_eq!(b.assigned_count(collector(2)), before, "nothing moves during grace");

        // Deregistered and forgotten on one replica: gone on the other too.
        let mut changes = Changes::default();
        a.deregister(registration(3, 1, None).spec.id, &mut changes);
        a.sweep(30 + ms(RULES.grace), &mut changes);
        assert_eq!(a.forget_departed(30 + ms(RULES.grace) + ms(RULES.forget_after), &mut changes), vec![collector(2)]);
        let caught = commit(&mut a, &mut b, changes);
        assert_eq!(caught.forgotten, vec![collector(2)]);
        assert_eq!(b.revision(), revision);
    }

    #[test]
    fn after_a_restart_a_collector_in_grace_keeps_the_kinds_it_had() {
        let mut state = empty(0);
        let mut changes = Changes::default();
        state.attach(collector(1), None, None, kinds(true), 0, &mut changes).unwrap();
        let record = state.register(prometheus(1), 0, &mut changes).record;
        assert_eq!(record.assigned, Some(collector(1)));
        let (batch, _) = state.finish(changes);
        let (_, stored) = batch.upsert_collectors.into_iter().find(|(c, _)| *c == collector(1)).unwrap();
        let loaded = Loaded {
            epoch: Uuid::from_u128(7),
            revision: 0,
            settled_at_ms: None,
            producers: vec![record],
            collectors: vec![(
                collector(1),
                CollectorRecord::restored(stored.generation, None, None, stored.supported_kinds),
            )],
        };
        let (mut state, _) = State::from_loaded(loaded, RULES, 1_000);
        state.check_invariants();
        let mut changes = Changes::default();
        // Another collector joins: nothing of the one in grace moves.
        state.attach(collector(2), None, None, kinds(false), 1_000, &mut changes).unwrap();
        assert_eq!(state.producer(prometheus(1).spec.id).and_then(|r| r.assigned), Some(collector(1)));
        state.check_invariants();
    }

    /// A collector away when a wiped store settles still gets a settled generation. Its own generation would
    /// otherwise never move (no producer of the new store is assigned to a departed collector): back with the
    /// settling generation it holds, it would be told it is in sync and carry the old store's producers forever.
    #[test]
    fn a_collector_departed_when_the_store_settles_gets_a_new_generation() {
        let mut state = empty(0);
        assert!(state.settling());
        let mut changes = Changes::default();
        state.attach(collector(1), None, None, kinds(true), 0, &mut changes).unwrap();
        state.finish(std::mem::take(&mut changes));
        let held = state.collector(collector(1)).unwrap().generation;
        state.detach(collector(1), None, 1_000, &mut changes);
        let (_, departed) = state.sweep(1_000 + ms(RULES.grace), &mut changes);
        assert_eq!(departed, vec![collector(1)]);
        state.finish(std::mem::take(&mut changes));
        assert_eq!(state.collector(collector(1)).unwrap().generation, held, "departing moved no producer");

        state.sweep(ms(RULES.settle), &mut changes);
        assert!(!state.settling());
        let (_, dirty) = state.finish(std::mem::take(&mut changes));
        assert!(dirty.contains(&collector(1)), "the departed collector's feed is published again: {dirty:?}");
        let settled = state.collector(collector(1)).unwrap().generation;
        assert!(settled > held, "{settled} > {held}");

        // Back with the generation it held, it is not in sync: it gets the settled snapshot (S3).
        state
            .attach(collector(1), Some((state.epoch(), held)), None, kinds(true), ms(RULES.settle), &mut changes)
            .unwrap();
        assert_eq!(state.collector(collector(1)).unwrap().generation, settled);
        state.check_invariants();
    }
}
