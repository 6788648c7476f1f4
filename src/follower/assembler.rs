//! Assembles snapshots from feed frames (C1–C3), as a pure state machine: frames in, events out, no I/O.
//!
//! It holds the applied snapshot (the last known set) and at most one partial snapshot. A partial becomes the
//! applied snapshot only when its complete chunk arrived, every chunk carried the same epoch and generation,
//! indices ran 0..n-1, the counts and the digest match, and every entry is valid with no id twice (C1). Anything
//! else discards the partial and leaves the applied snapshot untouched (C2). Within an epoch only a newer
//! generation applies (C3).
//!
//! **The new-epoch rule.** A new epoch means the server's store was created anew (for instance wiped), so its
//! snapshots say nothing about the old ones and its registry may be nearly empty until producers re-register.
//! While the server says its store is settling (it has not yet served one settle period, which covers the
//! longest renewal interval), a snapshot of a new epoch applies at once, **together with** every producer of the
//! applied set that it lacks: those are *carried* (kept, collected, persisted with the snapshot) while the store
//! settles. So a producer registered with the new store is collected at once, and none of the old set is dropped
//! on the word of a store that has lost its memory. Later settling snapshots of the same epoch carry the carried
//! producers they still lack; the first settled snapshot applies as sent, and then a producer that never came
//! back is dropped. A collector with no applied set applies any complete snapshot.
//!
//! **Entries arrive encoded** ([`super::wire`]). One whose bytes equal those of the applied entry of the same id
//! (the server encodes an unchanged producer the same way every time) is that entry: the applied target is
//! reused, with nothing decoded or compared. Any other entry is read into a target in one pass over its bytes
//! (`wire::read_entry`: no message of strings and maps in between). The digest is defined over each entry's
//! deterministic encoding, which is what a roster server sends, so the assembler digests the bytes as they came.
//! Only when that does not match, or an entry was longer than its re-encoding (it held fields this build does not
//! know, which must not pass unnoticed), is every entry decoded and encoded again to compute the digest by its
//! definition. What applies is the same either way; the fast way keeps a follower's cost per
//! generation near the cost of reading it.

use std::{collections::HashSet, sync::Arc};

use bytes::{Bytes, BytesMut};
use prost::Message as _;

use uuid::Uuid;

use super::wire::{self, WireChunk, WireFrame};
use crate::{
    domain::{ProducerId, Target},
    pb::{self, watch_response::Frame},
    snapshot::Digest,
};

/// A complete snapshot that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The server store's epoch.
    pub epoch: Uuid,
    /// The generation.
    pub generation: u64,
    /// The producers, ordered by id.
    pub targets: Vec<Target>,
    /// Whether the server's store was settling when it was sent.
    pub settling: bool,
    /// Producers of an earlier epoch's set that the server's snapshot lacks, kept in `targets` while its store
    /// settles (the new-epoch rule above); ordered by id.
    pub carried: Vec<ProducerId>,
}

impl Snapshot {
    /// The digest (S2) of the server's snapshot this set was applied from: of its producers without the carried
    /// ones, by the digest's definition. A `Watch` sends it (`known_digest`), so that a server that made this
    /// generation again with other producers (a store restored from an older backup) sends the collector the set
    /// it now has, rather than "in sync". It encodes every producer: computed once per snapshot, at a reconnect.
    pub fn server_digest(&self) -> u64 {
        let sent: Vec<pb::AssignedProducer> = self
            .targets
            .iter()
            .filter(|t| self.carried.binary_search(&t.id).is_err())
            .map(pb::AssignedProducer::from)
            .collect();
        crate::snapshot::digest(&sent)
    }

    /// The ids of its producers.
    pub fn ids(&self) -> HashSet<ProducerId> {
        self.targets.iter().map(|t| t.id).collect()
    }

    /// This snapshot's entry of `target.id` if it equals `target` (targets are sorted by id).
    fn unchanged(&self, target: &Target) -> Option<Target> {
        let at = self.targets.binary_search_by_key(&target.id, |t| t.id).ok()?;
        Some(&self.targets[at]).filter(|t| *t == target).cloned()
    }

    /// The new-epoch rule: a settling snapshot applied over `applied` keeps every producer of an earlier epoch that
    /// it lacks: all of `applied`'s when it is of another epoch, else those `applied` already carried.
    fn carry_from(mut self, applied: &Snapshot) -> Self {
        let carried_before: HashSet<ProducerId> = applied.carried.iter().copied().collect();
        let ids = self.ids();
        let carry: Vec<Target> = applied
            .targets
            .iter()
            .filter(|t| (applied.epoch != self.epoch || carried_before.contains(&t.id)) && !ids.contains(&t.id))
            .cloned()
            .collect();
        self.carried = carry.iter().map(|t| t.id).collect();
        self.targets.extend(carry);
        self.targets.sort_by_key(|t| t.id);
        self
    }
}

/// Why a partial or complete snapshot was not applied. The names are stable: they key the discard counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiscardReason {
    /// The stream failed or ended before the complete chunk.
    StreamEnded,
    /// A chunk of another epoch or generation arrived before the complete one.
    OtherGeneration,
    /// A chunk index was skipped (or the first chunk was not 0).
    Gap,
    /// A chunk index came twice.
    RepeatedChunk,
    /// The complete chunk's counts do not match what arrived.
    CountMismatch,
    /// The digest does not match what arrived.
    DigestMismatch,
    /// A producer id came twice.
    DuplicateProducer,
    /// An entry is invalid (bad id, address, interval or labels) or the epoch is not a UUID.
    InvalidEntry,
    /// An in-sync or heartbeat frame arrived in the middle of a snapshot.
    Interleaved,
    /// The snapshot grew past the follower's limit.
    TooLarge,
    /// An older generation of the applied epoch (C3: ignored).
    StaleGeneration,
}

impl DiscardReason {
    /// Every reason, so a counter of each can be shown before it happens.
    pub const ALL: [Self; 11] = [
        Self::StreamEnded,
        Self::OtherGeneration,
        Self::Gap,
        Self::RepeatedChunk,
        Self::CountMismatch,
        Self::DigestMismatch,
        Self::DuplicateProducer,
        Self::InvalidEntry,
        Self::Interleaved,
        Self::TooLarge,
        Self::StaleGeneration,
    ];

    /// The counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamEnded => "stream_ended",
            Self::OtherGeneration => "other_generation",
            Self::Gap => "gap",
            Self::RepeatedChunk => "repeated_chunk",
            Self::CountMismatch => "count_mismatch",
            Self::DigestMismatch => "digest_mismatch",
            Self::DuplicateProducer => "duplicate_producer",
            Self::InvalidEntry => "invalid_entry",
            Self::Interleaved => "interleaved",
            Self::TooLarge => "too_large",
            Self::StaleGeneration => "stale_generation",
        }
    }
}

/// What a frame led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chunk was accepted; the snapshot is not complete yet.
    Progress,
    /// A new snapshot is in force.
    Applied(Arc<Snapshot>),
    /// A complete snapshot of the applied generation (nothing to do).
    AlreadyApplied,
    /// A partial or complete snapshot was not applied; the last known set stays.
    Discarded(Discard),
    /// The server says the applied snapshot is current.
    InSync {
        /// Its epoch.
        epoch: String,
        /// Its generation.
        generation: u64,
    },
    /// The stream is alive.
    Heartbeat {
        /// The server's current epoch for this collector.
        epoch: String,
        /// The server's current generation for this collector.
        generation: u64,
    },
}

/// A partial or complete snapshot that was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discard {
    /// Why.
    pub reason: DiscardReason,
    /// Details for the log.
    pub detail: String,
    /// The (epoch, generation) concerned, when known: a complete snapshot that is refused is reported (C4).
    pub refused: Option<(Uuid, u64)>,
}

#[derive(Debug)]
struct Partial {
    epoch: String,
    generation: u64,
    next_index: u32,
    targets: Vec<Target>,
    /// The digest of the entries' bytes as they came.
    digest: Digest,
    /// Whether every decoded entry was exactly as long as its re-encoding.
    lengths_match: bool,
    /// Each entry's id and bytes, in arrival order: to compute the digest by its definition if need be, and to
    /// recognise the entry in the next generation. New entries are slices of the received frames until the
    /// snapshot applies.
    wire: Vec<(ProducerId, Bytes)>,
    /// How far the applied targets were walked looking for entries that did not change (both are ordered by id).
    cursor: usize,
}

/// Encoded entries, index for index with a snapshot's targets ([`Assembler::applied_encodings`]).
pub type Encodings = Arc<[Option<Bytes>]>;

/// The limit on producers in one snapshot (far above any real assignment; guards memory).
pub const MAX_PRODUCERS: usize = 1_000_000;

/// The assembler.
#[derive(Debug)]
pub struct Assembler {
    applied: Option<Arc<Snapshot>>,
    /// The encoding each applied target arrived as, index for index; `None` for one that did not arrive (loaded
    /// from disk, or carried). Empty when nothing arrived yet.
    applied_wire: Encodings,
    partial: Option<Partial>,
    max_producers: usize,
}

fn discard(reason: DiscardReason, detail: impl Into<String>) -> Discard {
    Discard { reason, detail: detail.into(), refused: None }
}

impl Assembler {
    /// Starts from the snapshot applied before (loaded from disk), if any.
    pub fn new(applied: Option<Arc<Snapshot>>) -> Self {
        Self { applied, applied_wire: Encodings::default(), partial: None, max_producers: MAX_PRODUCERS }
    }

    /// The same with a lower limit than [`MAX_PRODUCERS`], so that tests and the feed's test vectors (golden and
    /// random, in `testdata/README.md`'s `max_producers`) can reach it.
    pub fn with_max_producers(self, max_producers: usize) -> Self {
        Self { max_producers, ..self }
    }

    /// The snapshot in force.
    pub fn applied(&self) -> Option<&Arc<Snapshot>> {
        self.applied.as_ref()
    }

    /// The entries of the snapshot in force as the server encoded them, index for index with its targets (`None`
    /// where there is no such encoding: a target loaded from disk, or carried). A state file saves these bytes
    /// rather than encoding every target again (`state_file::save_encoded`).
    pub fn applied_encodings(&self) -> &Encodings {
        &self.applied_wire
    }

    /// The stream failed or ended: a partial snapshot is discarded (C2). Nothing complete was refused, so there is
    /// nothing to report.
    pub fn stream_ended(&mut self) -> Option<Discard> {
        self.partial.take().map(|p| {
            discard(
                DiscardReason::StreamEnded,
                format!("generation {} ended after {} chunks", p.generation, p.next_index),
            )
        })
    }

    /// Takes one decoded frame, as [`Self::on_wire_frame`] does (its entries are encoded again first).
    pub fn on_frame(&mut self, frame: Frame) -> Vec<Event> {
        self.on_wire_frame(frame.into())
    }

    /// Takes one frame as it came off the wire; returns what it led to (a discard of the partial may come before
    /// the frame's own event).
    pub fn on_wire_frame(&mut self, frame: WireFrame) -> Vec<Event> {
        match frame {
            WireFrame::Chunk(chunk) => self.on_chunk(chunk),
            WireFrame::InSync(s) => {
                let mut events = self.interrupt("in-sync");
                events.push(Event::InSync { epoch: s.epoch, generation: s.generation });
                events
            }
            WireFrame::Heartbeat(h) => {
                let mut events = self.interrupt("heartbeat");
                events.push(Event::Heartbeat { epoch: h.epoch, generation: h.generation });
                events
            }
        }
    }

    fn interrupt(&mut self, what: &str) -> Vec<Event> {
        self.partial
            .take()
            .map(|p| {
                Event::Discarded(discard(
                    DiscardReason::Interleaved,
                    format!("{what} frame inside generation {} after {} chunks", p.generation, p.next_index),
                ))
            })
            .into_iter()
            .collect()
    }

    fn on_chunk(&mut self, mut chunk: WireChunk) -> Vec<Event> {
        let mut events = Vec::new();
        // The partial is taken out while this chunk is checked: a chunk that breaks a rule leaves none behind (C2).
        let continued = match self.partial.take() {
            Some(p) if p.epoch != chunk.epoch || p.generation != chunk.generation => {
                events.push(Event::Discarded(discard(
                    DiscardReason::OtherGeneration,
                    format!(
                        "generation {} (epoch {}) interrupted by a chunk of generation {} (epoch {})",
                        p.generation, p.epoch, chunk.generation, chunk.epoch
                    ),
                )));
                None
            }
            kept => kept,
        };
        let mut partial = match continued {
            Some(p) => p,
            None if chunk.index == 0 => Partial {
                epoch: chunk.epoch.clone(),
                generation: chunk.generation,
                next_index: 0,
                // A next generation is mostly the applied one: room for as many, not a growing copy.
                targets: Vec::with_capacity(self.applied.as_ref().map_or(0, |a| a.targets.len())),
                digest: Digest::default(),
                lengths_match: true,
                wire: Vec::with_capacity(self.applied_wire.len()),
                cursor: 0,
            },
            None => {
                events.push(Event::Discarded(discard(
                    DiscardReason::Gap,
                    format!("generation {} started at chunk {}", chunk.generation, chunk.index),
                )));
                return events;
            }
        };
        if chunk.index != partial.next_index {
            let reason =
                if chunk.index < partial.next_index { DiscardReason::RepeatedChunk } else { DiscardReason::Gap };
            let detail = format!(
                "generation {}: chunk {} where {} was due",
                partial.generation, chunk.index, partial.next_index
            );
            events.push(Event::Discarded(discard(reason, detail)));
            return events;
        }
        if partial.targets.len() + chunk.producers.len() > self.max_producers {
            let detail = format!("generation {} exceeds {} producers", partial.generation, self.max_producers);
            events.push(Event::Discarded(discard(DiscardReason::TooLarge, detail)));
            return events;
        }
        for entry in std::mem::take(&mut chunk.producers) {
            match self.take_entry(&mut partial, entry) {
                Ok(target) => partial.targets.push(target),
                Err(problem) => {
                    let detail = format!("generation {}: {problem}", partial.generation);
                    events.push(Event::Discarded(discard(DiscardReason::InvalidEntry, detail)));
                    return events;
                }
            }
        }
        partial.next_index += 1;
        if chunk.complete {
            events.push(self.complete(partial, &chunk));
        } else {
            self.partial = Some(partial);
            events.push(Event::Progress);
        }
        events
    }

    /// One entry of `partial`: the applied target when the entry arrived as the same bytes, else the entry read
    /// and validated (`wire::read_entry`). Either way its bytes are digested and kept.
    fn take_entry(&self, partial: &mut Partial, entry: Bytes) -> Result<Target, String> {
        partial.digest.update_wire(&entry);
        if let Some(applied) = self.applied.as_deref() {
            let targets = &applied.targets;
            // Both are ordered by id, so an unchanged entry is usually the one the walk is at: its bytes are compared
            // first, and its id read only when they differ. An entry out of order only misses.
            let at = |cursor: usize| self.applied_wire.get(cursor).and_then(Option::as_ref).filter(|b| **b == entry);
            let mut found = at(partial.cursor);
            if found.is_none()
                && let Some(id) = wire::peek_id(&entry)
            {
                while targets.get(partial.cursor).is_some_and(|t| t.id < id) {
                    partial.cursor += 1;
                }
                found = at(partial.cursor);
            }
            if let Some(same) = found {
                let target = targets[partial.cursor].clone();
                partial.wire.push((target.id, same.clone()));
                partial.cursor += 1;
                return Ok(target);
            }
        }
        let (target, encoded_len) = wire::read_entry(&entry).map_err(|e| e.to_string())?;
        partial.lengths_match &= encoded_len == entry.len();
        partial.wire.push((target.id, entry));
        // An entry equal to the applied one of the same id *is* that one (its labels shared, not copied), so a new
        // generation holds, even while it is assembled, one copy of what did not change.
        Ok(self.applied.as_deref().and_then(|a| a.unchanged(&target)).unwrap_or(target))
    }

    fn complete(&mut self, p: Partial, last: &WireChunk) -> Event {
        let Ok(epoch) = Uuid::parse_str(&p.epoch) else {
            return Event::Discarded(discard(
                DiscardReason::InvalidEntry,
                format!("epoch {:?} is not a UUID", p.epoch),
            ));
        };
        let refused = Some((epoch, p.generation));
        let refuse = |reason, detail: String| Event::Discarded(Discard { reason, detail, refused });
        // Sorted by id (the server sends them so, which makes this linear), a repeated id sits next to itself.
        let mut targets = p.targets;
        targets.sort_by_key(|t| t.id);
        if let Some(twice) = targets.windows(2).find(|w| w[0].id == w[1].id) {
            return refuse(
                DiscardReason::DuplicateProducer,
                format!("generation {}: producer {} twice", p.generation, twice[0].id),
            );
        }
        if last.chunk_count != p.next_index || last.producer_count != targets.len() as u64 {
            return refuse(
                DiscardReason::CountMismatch,
                format!(
                    "generation {}: {} chunks and {} producers arrived, the complete chunk says {} and {}",
                    p.generation,
                    p.next_index,
                    targets.len(),
                    last.chunk_count,
                    last.producer_count
                ),
            );
        }
        if last.digest != 0 && !digest_matches(&p.digest, p.lengths_match, &p.wire, last.digest) {
            return refuse(
                DiscardReason::DigestMismatch,
                format!("generation {}: digest does not match", p.generation),
            );
        }
        let mut snapshot =
            Snapshot { epoch, generation: p.generation, targets, settling: last.store_settling, carried: Vec::new() };
        match &self.applied {
            Some(applied) if applied.epoch == epoch => {
                if snapshot.generation == applied.generation {
                    return Event::AlreadyApplied;
                }
                if snapshot.generation < applied.generation {
                    return Event::Discarded(discard(
                        DiscardReason::StaleGeneration,
                        format!("generation {} is older than the applied {}", snapshot.generation, applied.generation),
                    ));
                }
            }
            _ => {}
        }
        if snapshot.settling
            && let Some(applied) = &self.applied
        {
            snapshot = snapshot.carry_from(applied);
        }
        self.applied_wire = aligned(&snapshot.targets, p.wire).into();
        let snapshot = Arc::new(snapshot);
        self.applied = Some(snapshot.clone());
        Event::Applied(snapshot)
    }
}

/// Whether `entries` have digest `expected`: `as_they_came` (the digest of their bytes), when every entry was as
/// long as its re-encoding, else (or when that does not match) the digest by its definition, over every entry
/// decoded and encoded again.
fn digest_matches(as_they_came: &Digest, lengths_match: bool, entries: &[(ProducerId, Bytes)], expected: u64) -> bool {
    if lengths_match && as_they_came.finish() == expected {
        return true;
    }
    let mut by_definition = Digest::default();
    for (_, entry) in entries {
        match pb::AssignedProducer::decode(entry.as_ref()) {
            Ok(decoded) => by_definition.update(&decoded),
            Err(_) => return false,
        }
    }
    by_definition.finish() == expected
}

/// The encodings of `wire` index for index with `targets` (both ordered by id; `wire` is sorted first if it
/// arrived out of order), `None` for a target without one; copied into one buffer, so that the applied set holds
/// one allocation rather than one per entry, and no received frame stays alive for a few of its entries.
fn aligned(targets: &[Target], mut wire: Vec<(ProducerId, Bytes)>) -> Vec<Option<Bytes>> {
    if !wire.is_sorted_by_key(|(id, _)| *id) {
        wire.sort_by_key(|(id, _)| *id);
    }
    let mut buffer = BytesMut::with_capacity(wire.iter().map(|(_, bytes)| bytes.len()).sum());
    for (_, bytes) in &wire {
        buffer.extend_from_slice(bytes);
    }
    let buffer = buffer.freeze();
    let (mut wire, mut at) = (wire.into_iter().peekable(), 0);
    targets
        .iter()
        .map(|t| {
            let (_, bytes) = wire.next_if(|(id, _)| *id == t.id)?;
            at += bytes.len();
            Some(buffer.slice(at - bytes.len()..at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::snapshot::digest;

    fn entry(n: u16) -> pb::AssignedProducer {
        pb::AssignedProducer {
            id: Uuid::from_u128(u128::from(n) + 1).to_string(),
            address: format!("127.0.0.1:{}", 1000 + n),
            interval_ms: 1000,
            ..Default::default()
        }
    }

    /// The chunks the server would send for a snapshot.
    fn chunks(epoch: Uuid, generation: u64, settling: bool, ids: &[u16], per_chunk: usize) -> Vec<pb::SnapshotChunk> {
        let mut sorted: Vec<_> = ids.iter().copied().map(entry).collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        sorted.dedup_by(|a, b| a.id == b.id);
        let d = digest(&sorted);
        let groups: Vec<Vec<_>> =
            if sorted.is_empty() { vec![vec![]] } else { sorted.chunks(per_chunk.max(1)).map(<[_]>::to_vec).collect() };
        let n = groups.len();
        groups
            .into_iter()
            .enumerate()
            .map(|(i, producers)| {
                let complete = i + 1 == n;
                pb::SnapshotChunk {
                    epoch: epoch.to_string(),
                    generation,
                    index: i as u32,
                    producer_count: if complete { sorted.len() as u64 } else { 0 },
                    producers,
                    complete,
                    chunk_count: if complete { n as u32 } else { 0 },
                    digest: if complete { d } else { 0 },
                    store_settling: complete && settling,
                }
            })
            .collect()
    }

    fn feed(a: &mut Assembler, chunks: Vec<pb::SnapshotChunk>) -> Vec<Event> {
        chunks.into_iter().flat_map(|c| a.on_frame(Frame::Chunk(c))).collect()
    }

    fn applied_ids(a: &Assembler) -> Vec<String> {
        a.applied().map(|s| s.targets.iter().map(|t| t.id.to_string()).collect()).unwrap_or_default()
    }

    fn reasons(events: &[Event]) -> Vec<DiscardReason> {
        events.iter().filter_map(|e| if let Event::Discarded(d) = e { Some(d.reason) } else { None }).collect()
    }

    /// What a `Watch` says the collector holds (`known_digest`) is the digest the server sent with it: for any
    /// entries, labels and kinds included, and without the producers carried from an earlier epoch. Were it not,
    /// every reconnect would move the collector to a new generation and resend its whole set.
    #[test]
    fn the_server_digest_of_an_applied_snapshot_is_the_one_it_came_with() {
        let labelled = |n: u16| {
            let mut e = entry(n);
            e.labels = [("job".to_owned(), format!("j{n}")), ("zone".to_owned(), "a,b=c".to_owned())].into();
            if n.is_multiple_of(2) {
                e.kind = pb::ProducerKind::Prometheus.into();
                e.prometheus = Some(pb::PrometheusTarget {
                    scheme: "https".into(),
                    metrics_path: "/m".into(),
                    ..Default::default()
                });
            }
            e
        };
        let mut sorted: Vec<_> = (1..=6).map(labelled).collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let sent = digest(&sorted);
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        let chunk = |epoch: Uuid, producers: Vec<pb::AssignedProducer>, d: u64, settling: bool| pb::SnapshotChunk {
            epoch: epoch.to_string(),
            generation: 1,
            producer_count: producers.len() as u64,
            producers,
            complete: true,
            chunk_count: 1,
            digest: d,
            store_settling: settling,
            ..Default::default()
        };
        let mut a = Assembler::new(None);
        feed(&mut a, vec![chunk(old, sorted.clone(), sent, false)]);
        assert_eq!(a.applied().unwrap().server_digest(), sent);

        // A wiped store's settling snapshot holds half of them: the other half is carried, and not digested.
        let kept = sorted[..3].to_vec();
        let kept_digest = digest(&kept);
        feed(&mut a, vec![chunk(new, kept, kept_digest, true)]);
        let applied = a.applied().unwrap();
        assert_eq!((applied.targets.len(), applied.carried.len()), (6, 3));
        assert_eq!(applied.server_digest(), kept_digest);
    }

    #[test]
    fn a_complete_snapshot_applies_and_a_truncated_one_does_not() {
        let epoch = Uuid::new_v4();
        let mut a = Assembler::new(None);
        let events = feed(&mut a, chunks(epoch, 1, false, &[1, 2, 3], 2));
        assert!(matches!(events.last(), Some(Event::Applied(_))));
        let before = applied_ids(&a);
        let mut next = chunks(epoch, 2, false, &[1], 1);
        next.truncate(0);
        let mut partial = chunks(epoch, 2, false, &[1, 2, 3, 4], 2);
        partial.pop();
        feed(&mut a, partial);
        assert_eq!(a.stream_ended().map(|d| d.reason), Some(DiscardReason::StreamEnded));
        assert_eq!(applied_ids(&a), before, "the last known set stays");
    }

    #[test]
    fn each_broken_rule_discards_with_its_reason() {
        let epoch = Uuid::new_v4();
        type Corrupt = Box<dyn Fn(&mut Vec<pb::SnapshotChunk>)>;
        let cases: Vec<(DiscardReason, Corrupt)> = vec![
            (
                DiscardReason::Gap,
                Box::new(|c| {
                    c.remove(1);
                }),
            ),
            (
                DiscardReason::RepeatedChunk,
                Box::new(|c| {
                    let again = c[0].clone();
                    c.insert(1, again);
                }),
            ),
            (DiscardReason::OtherGeneration, Box::new(|c| c[1].generation = 9)),
            (DiscardReason::CountMismatch, Box::new(|c| c.last_mut().unwrap().producer_count += 1)),
            (DiscardReason::CountMismatch, Box::new(|c| c.last_mut().unwrap().chunk_count += 1)),
            (DiscardReason::DigestMismatch, Box::new(|c| c.last_mut().unwrap().digest ^= 1)),
            (
                DiscardReason::DuplicateProducer,
                Box::new(|c| {
                    let dup = c[0].producers[0].clone();
                    c[1].producers.push(dup);
                }),
            ),
            (DiscardReason::InvalidEntry, Box::new(|c| c[1].producers[0].address = "nope".into())),
            (DiscardReason::InvalidEntry, Box::new(|c| c[1].producers[0].interval_ms = 0)),
        ];
        for (want, corrupt) in cases {
            let mut a = Assembler::new(None);
            feed(&mut a, chunks(epoch, 1, false, &[1, 2], 1));
            let mut c = chunks(epoch, 2, false, &[1, 2, 3, 4, 5, 6], 2);
            corrupt(&mut c);
            let events = feed(&mut a, c);
            assert!(reasons(&events).contains(&want), "{want:?}: {events:?}");
            assert_eq!(a.applied().unwrap().generation, 1, "{want:?}: generation 1 stays in force");
        }
        let mut a = Assembler::new(None).with_max_producers(3);
        assert_eq!(reasons(&feed(&mut a, chunks(epoch, 1, false, &[1, 2, 3, 4], 2))), vec![DiscardReason::TooLarge]);
    }

    #[test]
    fn generations_apply_forward_only_within_an_epoch() {
        let epoch = Uuid::new_v4();
        let mut a = Assembler::new(None);
        feed(&mut a, chunks(epoch, 5, false, &[1], 10));
        assert_eq!(feed(&mut a, chunks(epoch, 5, false, &[1], 10)), vec![Event::AlreadyApplied]);
        assert_eq!(reasons(&feed(&mut a, chunks(epoch, 4, false, &[2], 10))), vec![DiscardReason::StaleGeneration]);
        assert!(matches!(feed(&mut a, chunks(epoch, 6, false, &[2], 10)).last(), Some(Event::Applied(_))));
    }

    #[test]
    fn a_new_generation_shares_the_entries_that_did_not_change() {
        let epoch = Uuid::new_v4();
        let mut a = Assembler::new(None);
        let with_labels = |generation, zone: &str| {
            let mut c = chunks(epoch, generation, false, &[1, 2, 3], 10);
            for (i, p) in c[0].producers.iter_mut().enumerate() {
                p.labels.insert("zone".into(), if i == 1 { zone.into() } else { "a".into() });
            }
            c[0].digest = digest(&c[0].producers);
            c
        };
        feed(&mut a, with_labels(1, "a"));
        let first = a.applied().unwrap().clone();
        feed(&mut a, with_labels(2, "b"));
        let second = a.applied().unwrap();
        assert_eq!(second.generation, 2);
        let shared: Vec<bool> =
            first.targets.iter().zip(&second.targets).map(|(x, y)| x.labels.shares(&y.labels)).collect();
        assert_eq!(shared, vec![true, false, true], "only the changed entry is a new allocation");
    }

    /// `entry(n)` encoded with its fields in reverse order: valid protobuf, the same message, but not the
    /// deterministic encoding the digest is defined over.
    fn reversed(n: u16) -> Bytes {
        use prost::encoding::{string, uint32};
        let p = entry(n);
        let mut buf = Vec::new();
        uint32::encode(3, &p.interval_ms, &mut buf);
        string::encode(2, &p.address, &mut buf);
        string::encode(1, &p.id, &mut buf);
        Bytes::from(buf)
    }

    fn wire_chunk(epoch: Uuid, generation: u64, producers: Vec<Bytes>, digest: u64) -> WireFrame {
        WireFrame::Chunk(WireChunk {
            epoch: epoch.to_string(),
            generation,
            index: 0,
            producer_count: producers.len() as u64,
            producers,
            complete: true,
            chunk_count: 1,
            digest,
            store_settling: false,
        })
    }

    #[test]
    fn an_entry_not_deterministically_encoded_is_checked_against_the_digest_by_its_definition() {
        let epoch = Uuid::new_v4();
        let mut a = Assembler::new(None);
        let d = digest(&[entry(1), entry(2)]);
        let plain = Bytes::from(entry(2).encode_to_vec());
        for generation in 1..=2 {
            let events = a.on_wire_frame(wire_chunk(epoch, generation, vec![reversed(1), plain.clone()], d));
            assert!(matches!(events.last(), Some(Event::Applied(_))), "generation {generation}: {events:?}");
        }
        assert_eq!(applied_ids(&a).len(), 2);
        // A server that digests the very bytes it sends is believed: they are what it meant.
        let mut over_bytes = Digest::default();
        over_bytes.update_wire(&reversed(1));
        over_bytes.update_wire(&plain);
        let events = a.on_wire_frame(wire_chunk(epoch, 3, vec![reversed(1), plain.clone()], over_bytes.finish()));
        assert!(matches!(events.last(), Some(Event::Applied(_))), "{events:?}");
        // An entry with a field this build does not know, digested with it: by the definition (its re-encoding
        // drops the field) the digest does not match, so the snapshot is refused rather than half understood.
        let mut unknown = plain.to_vec();
        prost::encoding::uint32::encode(99, &7, &mut unknown);
        let mut with_unknown = Digest::default();
        with_unknown.update_wire(&reversed(1));
        with_unknown.update_wire(&unknown);
        let producers = vec![reversed(1), Bytes::from(unknown)];
        let events = a.on_wire_frame(wire_chunk(epoch, 4, producers, with_unknown.finish()));
        assert_eq!(reasons(&events), vec![DiscardReason::DigestMismatch]);
        assert_eq!(a.applied().unwrap().generation, 3);
    }

    #[test]
    fn an_entry_that_does_not_decode_discards_the_snapshot_and_one_that_changed_is_read_anew() {
        let epoch = Uuid::new_v4();
        let mut a = Assembler::new(None);
        feed(&mut a, chunks(epoch, 1, false, &[1, 2], 10));
        let garbage = Bytes::from_static(&[0x0a, 0xff]);
        let events = a.on_wire_frame(wire_chunk(epoch, 2, vec![garbage], 0));
        assert_eq!(reasons(&events), vec![DiscardReason::InvalidEntry]);
        // Same id, another address: not the applied bytes, so decoded, and the new address is in force.
        let mut moved = entry(2);
        moved.address = "127.0.0.1:9".into();
        let producers = vec![Bytes::from(entry(1).encode_to_vec()), Bytes::from(moved.encode_to_vec())];
        let events = a.on_wire_frame(wire_chunk(epoch, 3, producers, digest(&[entry(1), moved])));
        assert!(matches!(events.last(), Some(Event::Applied(_))), "{events:?}");
        assert_eq!(a.applied().unwrap().targets[1].address.to_string(), "127.0.0.1:9");
    }

    #[test]
    fn a_settling_new_epoch_cannot_shrink_the_set_but_grows_it_at_once() {
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        let mut a = Assembler::new(None);
        feed(&mut a, chunks(old, 40, false, &[1, 2, 3], 10));
        let carried = |a: &Assembler| a.applied().unwrap().carried.len();
        // An empty answer from a store that just lost its memory applies, carrying the whole old set.
        assert!(matches!(feed(&mut a, chunks(new, 1, true, &[], 10)).last(), Some(Event::Applied(_))));
        assert_eq!((a.applied().unwrap().epoch, applied_ids(&a).len(), carried(&a)), (new, 3, 3));
        // A producer that registered with the new store is collected at once; one that came back is no longer
        // carried.
        feed(&mut a, chunks(new, 2, true, &[1, 4], 10));
        assert_eq!((applied_ids(&a).len(), carried(&a)), (4, 2));
        // Within the settling epoch only what was carried is carried: 4, gone from this one, goes.
        feed(&mut a, chunks(new, 3, true, &[1], 10));
        assert_eq!((applied_ids(&a).len(), carried(&a)), (3, 2));
        // Once settled, the new epoch's word is final, even if smaller.
        feed(&mut a, chunks(new, 4, false, &[5], 10));
        assert_eq!((applied_ids(&a).len(), carried(&a)), (1, 0));
        // A settling snapshot of yet another epoch carries from the settled set, and only from it.
        feed(&mut a, chunks(Uuid::new_v4(), 1, true, &[6], 10));
        assert_eq!((applied_ids(&a).len(), carried(&a)), (2, 1));
    }

    /// A stream event in the property test.
    #[derive(Debug, Clone)]
    enum Step {
        /// The server sends the snapshot numbered `snapshot`, cut into `per_chunk`, with a corruption.
        Send {
            snapshot: usize,
            per_chunk: usize,
            corruption: Corruption,
        },
        Heartbeat,
        Break,
    }

    #[derive(Debug, Clone)]
    enum Corruption {
        None,
        Truncate(usize),
        DropChunk(usize),
        RepeatChunk(usize),
        FlipDigest,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0usize..8, 1usize..4, prop_oneof![
                4 => Just(Corruption::None),
                1 => (0usize..4).prop_map(Corruption::Truncate),
                1 => (0usize..4).prop_map(Corruption::DropChunk),
                1 => (0usize..4).prop_map(Corruption::RepeatChunk),
                1 => Just(Corruption::FlipDigest),
            ]).prop_map(|(snapshot, per_chunk, corruption)| Step::Send { snapshot, per_chunk, corruption }),
            1 => Just(Step::Heartbeat),
            1 => Just(Step::Break),
        ]
    }

    proptest! {
        /// For any sequence of snapshots, corruptions, truncations and stream breaks, every applied set equals
        /// some complete snapshot that was sent, and generations only increase within an epoch.
        #[test]
        fn applied_sets_are_always_sent_snapshots(
            sets in prop::collection::vec(prop::collection::vec(0u16..30, 0..12), 8),
            steps in prop::collection::vec(step(), 1..60),
        ) {
            let epochs = [Uuid::from_u128(1), Uuid::from_u128(2)];
            // Snapshot i: epoch by i / 4 (two epochs), generation i % 4 + 1, settled.
            let sent = |i: usize| (epochs[i / 4], (i % 4) as u64 + 1, &sets[i]);
            let mut a = Assembler::new(None);
            let mut last_applied: Option<(Uuid, u64)> = None;
            for step in steps {
                let events = match step {
                    Step::Heartbeat => a.on_frame(Frame::Heartbeat(pb::Heartbeat::default())),
                    Step::Break => a.stream_ended().into_iter().map(Event::Discarded).collect(),
                    Step::Send { snapshot, per_chunk, corruption } => {
                        let (epoch, generation, ids) = sent(snapshot);
                        let mut c = chunks(epoch, generation, false, ids, per_chunk);
                        match corruption {
                            Corruption::None => {}
                            Corruption::Truncate(n) => c.truncate(n.min(c.len().saturating_sub(1))),
                            Corruption::DropChunk(i) => { if c.len() > 1 { c.remove(i % c.len()); } }
                            Corruption::RepeatChunk(i) => { let i = i % c.len(); let again = c[i].clone(); c.insert(i, again); }
                            Corruption::FlipDigest => c.last_mut().unwrap().digest ^= 1,
                        }
                        feed(&mut a, c)
                    }
                };
                for event in events {
                    if let Event::Applied(s) = event {
                        let index = epochs.iter().position(|e| *e == s.epoch).unwrap() * 4 + (s.generation - 1) as usize;
                        let mut want: Vec<_> = sets[index].iter().map(|n| Uuid::from_u128(u128::from(*n) + 1)).collect();
                        want.sort();
                        want.dedup();
                        let got: Vec<_> = s.targets.iter().map(|t| t.id.0).collect();
                        prop_assert_eq!(got, want, "applied set is exactly snapshot {}", index);
                        if let Some((epoch, generation)) = last_applied
                            && epoch == s.epoch
                        {
                            prop_assert!(s.generation > generation, "generation went from {} to {}", generation, s.generation);
                        }
                        last_applied = Some((s.epoch, s.generation));
                    }
                }
            }
        }
    }
}
