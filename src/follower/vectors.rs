//! The JSON form of the feed's assembly vectors (`testdata/README.md`): frames, events and snapshots as the vector
//! files write them, and random assembly cases whose expected outcomes come from running the assembler.
//!
//! One writer of that form, shared by two users: the golden vectors' tests (`feed_vectors.rs`, which compare the
//! assembler's events with a file's in this form) and the example `feed-random-vectors`, which writes random cases
//! for the Python package to replay (issue 16: both assemblers accept and reject the same frame sequences). It needs
//! serde_json, which is only a dev-dependency of roster, so it is not part of the library's API: the library
//! compiles it for its tests, and the example includes this same file (`#[path]`). It reaches the library through
//! `crate::{follower, pb, snapshot}`, names that the library has and that the example imports at its root.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng, rngs::StdRng, seq::index::sample};
use serde_json::{Value, json};

use crate::{
    follower::assembler::{Assembler, Discard, Event, Snapshot},
    pb::{self, watch_response::Frame},
    snapshot::digest,
};

/// A snapshot as the vectors write it: its producers' ids in order, the digest of its entries in that order
/// (covering address, interval and labels), and which producers are carried from an earlier epoch.
pub(crate) fn snapshot_json(s: &Snapshot) -> Value {
    let entries: Vec<pb::AssignedProducer> = s.targets.iter().map(pb::AssignedProducer::from).collect();
    json!({
        "epoch": s.epoch.to_string(),
        "generation": s.generation.to_string(),
        "settling": s.settling,
        "producers": s.targets.iter().map(|t| t.id.to_string()).collect::<Vec<_>>(),
        "carried": s.carried.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "digest": digest(&entries).to_string(),
    })
}

/// An event as the vectors write it. A discard's detail is for logs and not part of the contract.
pub(crate) fn event_json(event: &Event) -> Value {
    match event {
        Event::Progress => json!({"event": "progress"}),
        Event::Applied(s) => json!({"event": "applied", "snapshot": snapshot_json(s)}),
        Event::AlreadyApplied => json!({"event": "already_applied"}),
        Event::Discarded(Discard { reason, detail: _, refused }) => json!({
            "event": "discarded",
            "reason": reason.as_str(),
            "refused": refused.map(|(epoch, generation)| json!({
                "epoch": epoch.to_string(),
                "generation": generation.to_string(),
            })),
        }),
        Event::InSync { epoch, generation } => {
            json!({"event": "in_sync", "epoch": epoch, "generation": generation.to_string()})
        }
        Event::Heartbeat { epoch, generation } => {
            json!({"event": "heartbeat", "epoch": epoch, "generation": generation.to_string()})
        }
    }
}

/// A `roster.v1.WatchResponse` as the vectors write it (proto3's JSON mapping, every key of a chunk written). An
/// entry is written with the four fields the form has (`id`, `address`, `interval_ms`, `labels`); the generator
/// below sets no other.
pub(crate) fn frame_json(frame: &Frame) -> Value {
    match frame {
        Frame::Chunk(c) => json!({"chunk": {
            "epoch": c.epoch,
            "generation": c.generation.to_string(),
            "index": c.index,
            "producers": c.producers.iter().map(|p| json!({
                "id": p.id,
                "address": p.address,
                "interval_ms": p.interval_ms,
                "labels": p.labels,
            })).collect::<Vec<_>>(),
            "complete": c.complete,
            "chunk_count": c.chunk_count,
            "producer_count": c.producer_count.to_string(),
            "digest": c.digest.to_string(),
            "store_settling": c.store_settling,
        }}),
        Frame::InSync(s) => json!({"in_sync": {"epoch": s.epoch, "generation": s.generation.to_string()}}),
        Frame::Heartbeat(h) => json!({"heartbeat": {"epoch": h.epoch, "generation": h.generation.to_string()}}),
    }
}

/// The epochs random cases draw from: two, so that both the same-epoch rules and the new-epoch rule occur.
const EPOCHS: [&str; 2] = ["aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"];
/// The producers random snapshots draw from: few, so that consecutive snapshots share producers (carrying,
/// unchanged entries) and a limit of a few producers is reached.
const POOL: usize = 8;
/// At most this many producers in one random snapshot.
const MAX_SNAPSHOT: usize = 6;

/// Producer `n` of the pool: a fixed id, address and labels.
fn pool_entry(n: usize) -> pb::AssignedProducer {
    let mut labels = BTreeMap::from([("job".to_owned(), "node".to_owned())]);
    if n.is_multiple_of(2) {
        labels.insert("zone".to_owned(), "a".to_owned());
    }
    pb::AssignedProducer {
        id: format!("00000000-0000-4000-8000-{:012}", n + 1),
        address: format!("10.0.0.{}:9100", n + 1),
        interval_ms: 15_000,
        labels: labels.into_iter().collect(),
        ..Default::default()
    }
}

/// The frames the server would send for one snapshot (S2): the entries in id order, split into `chunks` chunks
/// (some possibly empty), the counts and the digest on the complete chunk only.
fn snapshot_frames(
    epoch: &str,
    generation: u64,
    entries: &[pb::AssignedProducer],
    chunks: usize,
    settling: bool,
    rng: &mut StdRng,
) -> Vec<pb::SnapshotChunk> {
    let mut cuts: Vec<usize> = (0..chunks - 1).map(|_| rng.random_range(0..=entries.len())).collect();
    cuts.sort_unstable();
    cuts.push(entries.len());
    let mut start = 0;
    cuts.iter()
        .enumerate()
        .map(|(i, &end)| {
            let complete = i + 1 == chunks;
            let chunk = pb::SnapshotChunk {
                epoch: epoch.to_owned(),
                generation,
                index: u32::try_from(i).expect("at most 3 chunks"),
                producers: entries[start..end].to_vec(),
                complete,
                chunk_count: if complete { u32::try_from(chunks).expect("at most 3 chunks") } else { 0 },
                producer_count: if complete { entries.len() as u64 } else { 0 },
                digest: if complete { digest(entries) } else { 0 },
                store_settling: complete && settling,
            };
            start = end;
            chunk
        })
        .collect()
}

/// A number in 0..=4 other than `right`, for a wrong index or chunk count.
fn other_than(right: u32, rng: &mut StdRng) -> u32 {
    let wrong = rng.random_range(0..4);
    if wrong >= right { wrong + 1 } else { wrong }
}

/// A step of a case: a frame, or the stream's end.
enum Step {
    Frame(Frame),
    StreamEnded,
}

/// A plausible snapshot's frames, then at most one fault; pushes the steps and returns what was done, for the
/// case's name.
fn random_snapshot(rng: &mut StdRng, steps: &mut Vec<Step>) -> String {
    let epoch_at = rng.random_range(0..EPOCHS.len());
    let epoch = EPOCHS[epoch_at];
    let generation = rng.random_range(1..=4u64);
    let count = rng.random_range(0..=MAX_SNAPSHOT);
    let mut picked: Vec<usize> = sample(rng, POOL, count).into_vec();
    picked.sort_unstable();
    let mut entries: Vec<pb::AssignedProducer> = picked.into_iter().map(pool_entry).collect();
    let chunks = rng.random_range(1..=3usize);
    let settling = rng.random_bool(0.3);
    // One snapshot in two is changed, mostly by a fault (digest 0 is allowed: not checked); `what` names the change
    // (empty: none, or one that does not fit this snapshot, such as a swap of its only chunk).
    let fault = if rng.random_bool(0.5) { rng.random_range(0..11) } else { usize::MAX };
    let mut what = String::new();
    // A fault in the entries comes before the counts and the digest are computed, so it is the only fault.
    if fault == 0 && !entries.is_empty() {
        let twice = rng.random_range(0..entries.len());
        entries.insert(twice, entries[twice].clone());
        what = ", a producer twice".to_owned();
    } else if fault == 1 && !entries.is_empty() {
        let at = rng.random_range(0..entries.len());
        entries[at].interval_ms = 0;
        what = ", an entry with interval 0".to_owned();
    }
    let mut frames = snapshot_frames(epoch, generation, &entries, chunks, settling, rng);
    let last = frames.len() - 1;
    let mut ended = false;
    let mut between: Option<(usize, Frame)> = None;
    match fault {
        2 if frames.len() > 1 => {
            let at = rng.random_range(0..frames.len());
            frames.remove(at);
            what = format!(", chunk {at} dropped");
        }
        3 => {
            let at = rng.random_range(0..frames.len());
            frames.insert(at + 1, frames[at].clone());
            what = format!(", chunk {at} twice");
        }
        4 if frames.len() > 1 => {
            let at = rng.random_range(0..frames.len() - 1);
            frames.swap(at, at + 1);
            what = format!(", chunks {at} and {} swapped", at + 1);
        }
        5 => {
            frames[last].digest ^= 1 + rng.random_range(0..u64::from(u32::MAX));
            what = ", a wrong digest".to_owned();
        }
        6 => {
            if rng.random_bool(0.5) {
                frames[last].producer_count += 1;
                what = ", a wrong producer count".to_owned();
            } else {
                frames[last].chunk_count = other_than(frames[last].chunk_count, rng);
                what = format!(", chunk_count {} where {chunks} were sent", frames[last].chunk_count);
            }
        }
        7 => {
            let at = rng.random_range(0..frames.len());
            frames[at].index = other_than(frames[at].index, rng);
            what = format!(", chunk {at} says index {}", frames[at].index);
        }
        8 => {
            frames.truncate(rng.random_range(0..frames.len()));
            ended = true;
            what = format!(", the stream cut before chunk {}", frames.len());
        }
        9 => {
            let frame = if rng.random_bool(0.5) {
                Frame::InSync(pb::InSync { epoch: epoch.to_owned(), generation })
            } else {
                Frame::Heartbeat(pb::Heartbeat { epoch: epoch.to_owned(), generation })
            };
            let at = rng.random_range(0..frames.len());
            what = format!(
                ", {} before chunk {at}",
                if matches!(frame, Frame::InSync(_)) { "in-sync" } else { "a heartbeat" }
            );
            between = Some((at, frame));
        }
        10 => {
            frames[last].digest = 0;
            what = ", digest 0 (not checked)".to_owned();
        }
        _ => {}
    }
    let settled = if settling { "settling" } else { "settled" };
    let epoch_name = ["a", "b"][epoch_at];
    let producers = match entries.len() {
        1 => "1 producer".to_owned(),
        n => format!("{n} producers"),
    };
    let chunks = if chunks == 1 { "1 chunk".to_owned() } else { format!("{chunks} chunks") };
    let name = format!("epoch {epoch_name} generation {generation}, {producers} in {chunks}, {settled}{what}");
    for (i, chunk) in frames.into_iter().enumerate() {
        if let Some((_, frame)) = between.take_if(|(at, _)| *at == i) {
            steps.push(Step::Frame(frame));
        }
        steps.push(Step::Frame(Frame::Chunk(chunk)));
    }
    if ended {
        steps.push(Step::StreamEnded);
    }
    name
}

/// One random case: one to three snapshots, each perhaps with a fault, perhaps frames and stream ends between
/// them, perhaps a limit on producers; the expected events and snapshot in force are the assembler's.
fn random_case(rng: &mut StdRng, seed: u64, number: usize) -> Value {
    let max_producers = rng.random_bool(0.15).then(|| rng.random_range(2..=5usize));
    let mut steps = Vec::new();
    let mut parts = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        parts.push(random_snapshot(rng, &mut steps));
        if rng.random_bool(0.15) {
            let epoch = EPOCHS[rng.random_range(0..EPOCHS.len())].to_owned();
            let generation = rng.random_range(1..=4);
            steps.push(Step::Frame(if rng.random_bool(0.5) {
                Frame::InSync(pb::InSync { epoch, generation })
            } else {
                Frame::Heartbeat(pb::Heartbeat { epoch, generation })
            }));
            parts.push("an in-sync or heartbeat frame".to_owned());
        }
    }
    if rng.random_bool(0.1) {
        steps.push(Step::StreamEnded);
        parts.push("the stream ends".to_owned());
    }
    let mut assembler = Assembler::new(None);
    let mut name = format!("seed {seed} case {number}: ");
    if let Some(max) = max_producers {
        assembler = assembler.with_max_producers(max);
        name.push_str(&format!("(at most {max} producers) "));
    }
    name.push_str(&parts.join("; then "));
    let steps: Vec<Value> = steps
        .into_iter()
        .map(|step| match step {
            Step::Frame(frame) => {
                let written = frame_json(&frame);
                let events: Vec<Value> = assembler.on_frame(frame).iter().map(event_json).collect();
                json!({"frame": written, "events": events})
            }
            Step::StreamEnded => {
                let events: Vec<Value> =
                    assembler.stream_ended().into_iter().map(Event::Discarded).map(|e| event_json(&e)).collect();
                json!({"stream_ended": true, "events": events})
            }
        })
        .collect();
    let mut case = json!({
        "name": name,
        "rules": ["C1", "C2", "C3"],
        "steps": steps,
        "applied": assembler.applied().map_or(Value::Null, |s| snapshot_json(s)),
    });
    if let Some(max) = max_producers {
        case["max_producers"] = json!(max);
    }
    case
}

/// `cases` random assembly cases from `seed`, as one file of `testdata/feed/assembly/`'s schema. The same seed and
/// count give the same file (with the `Cargo.lock`'s rand: `StdRng`'s stream may change between rand versions).
pub(crate) fn random_assembly_vectors(seed: u64, cases: usize) -> Value {
    let mut rng = StdRng::seed_from_u64(seed);
    let list: Vec<Value> = (0..cases).map(|number| random_case(&mut rng, seed, number)).collect();
    json!({
        "description": format!(
            "{cases} random assembly cases (seed {seed}) from roster's feed-random-vectors example: snapshots of \
             two epochs sent as the server sends them, some with one fault; expected outcomes from roster's Rust \
             assembler"
        ),
        "cases": list,
    })
}
