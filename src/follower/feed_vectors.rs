//! The golden feed vectors in `testdata/feed/` checked against the assembler and the digest (C1–C3, S2).
//!
//! The vectors are the contract any follower of the feed must meet, in any language (the Python package reads the
//! same files): frames in, the assembler's events and the snapshot in force out; and producer sets with their
//! digests. Their expected values were produced once by this code and reviewed by hand against the rules in
//! `docs/DESIGN.md`; nothing here computes an expected value, so a change of behaviour fails here until a vector
//! is deliberately changed. The schema is described in `testdata/README.md`; the form events and snapshots are
//! written in is `vectors.rs`'s, the one the random vectors for the Python package are written with, and those
//! random vectors go through the same checks here, so their schema cannot drift from the golden files'.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use serde_json::{Map, Value};

use super::{
    assembler::{Assembler, Event},
    vectors::{event_json, random_assembly_vectors, snapshot_json},
};
use crate::{
    pb::{self, watch_response::Frame},
    snapshot::digest,
};

fn vectors_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/feed"))
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// `value` as an object with no key outside `allowed` (a misspelt key must not be silently ignored).
fn object<'a>(value: &'a Value, allowed: &[&str], what: &str) -> &'a Map<String, Value> {
    let map = value.as_object().unwrap_or_else(|| panic!("{what}: expected an object, got {value}"));
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        panic!("{what}: unknown key {unknown:?} (allowed: {allowed:?})");
    }
    map
}

fn string(map: &Map<String, Value>, key: &str, what: &str) -> String {
    match map.get(key) {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => panic!("{what}.{key}: expected a string, got {other}"),
    }
}

fn boolean(map: &Map<String, Value>, key: &str, what: &str) -> bool {
    match map.get(key) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => panic!("{what}.{key}: expected true or false, got {other}"),
    }
}

/// A `uint32` field: a JSON number, as proto3's JSON mapping writes it.
fn uint32(map: &Map<String, Value>, key: &str, what: &str) -> u32 {
    match map.get(key) {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_else(|| panic!("{what}.{key}: expected a uint32 number, got {v}")),
    }
}

/// A `uint64` field: a decimal string, as proto3's JSON mapping writes it (JSON numbers lose precision past 2^53).
fn uint64(map: &Map<String, Value>, key: &str, what: &str) -> u64 {
    match map.get(key) {
        None => 0,
        Some(Value::String(s)) => s.parse().unwrap_or_else(|e| panic!("{what}.{key}: {s:?} is not a uint64: {e}")),
        Some(other) => panic!("{what}.{key}: expected a uint64 as a decimal string, got {other}"),
    }
}

fn producer(value: &Value, what: &str) -> pb::AssignedProducer {
    let map = object(value, &["id", "address", "interval_ms", "labels"], what);
    let labels = match map.get("labels") {
        None => BTreeMap::new(),
        Some(Value::Object(labels)) => labels.keys().map(|k| (k.clone(), string(labels, k, what))).collect(),
        Some(other) => panic!("{what}.labels: expected an object of strings, got {other}"),
    };
    pb::AssignedProducer {
        id: string(map, "id", what),
        address: string(map, "address", what),
        interval_ms: uint32(map, "interval_ms", what),
        labels,
        ..Default::default()
    }
}

fn producers(map: &Map<String, Value>, key: &str, what: &str) -> Vec<pb::AssignedProducer> {
    match map.get(key) {
        None => Vec::new(),
        Some(Value::Array(list)) => {
            list.iter().enumerate().map(|(i, p)| producer(p, &format!("{what}.{key}[{i}]"))).collect()
        }
        Some(other) => panic!("{what}.{key}: expected an array, got {other}"),
    }
}

/// A `roster.v1.WatchResponse` in proto3's JSON mapping (field names as in the .proto).
fn frame(value: &Value, what: &str) -> Frame {
    let map = object(value, &["chunk", "in_sync", "heartbeat"], what);
    assert_eq!(map.len(), 1, "{what}: a WatchResponse sets exactly one of its frame fields");
    if let Some(chunk) = map.get("chunk") {
        let what = &format!("{what}.chunk");
        let c = object(
            chunk,
            &[
                "epoch",
                "generation",
                "index",
                "producers",
                "complete",
                "chunk_count",
                "producer_count",
                "digest",
                "store_settling",
            ],
            what,
        );
        return Frame::Chunk(pb::SnapshotChunk {
            epoch: string(c, "epoch", what),
            generation: uint64(c, "generation", what),
            index: uint32(c, "index", what),
            producers: producers(c, "producers", what),
            complete: boolean(c, "complete", what),
            chunk_count: uint32(c, "chunk_count", what),
            producer_count: uint64(c, "producer_count", what),
            digest: uint64(c, "digest", what),
            store_settling: boolean(c, "store_settling", what),
        });
    }
    let (key, inner) = map.iter().next().expect("one field, checked above");
    let what = &format!("{what}.{key}");
    let m = object(inner, &["epoch", "generation"], what);
    let (epoch, generation) = (string(m, "epoch", what), uint64(m, "generation", what));
    match key.as_str() {
        "in_sync" => Frame::InSync(pb::InSync { epoch, generation }),
        _ => Frame::Heartbeat(pb::Heartbeat { epoch, generation }),
    }
}

/// Runs one assembly case; panics naming the case, the step and both outcomes at the first difference.
fn run_case(case: &Value, file: &str) {
    let map = object(case, &["name", "rules", "max_producers", "steps", "applied"], file);
    let name = map.get("name").and_then(Value::as_str).unwrap_or_else(|| panic!("{file}: a case without a name"));
    let what = format!("{file}: {name:?}");
    let rules = map.get("rules").and_then(Value::as_array).unwrap_or_else(|| panic!("{what}: no rules"));
    assert!(!rules.is_empty(), "{what}: name the rules the case covers");
    let mut assembler = Assembler::new(None);
    if let Some(max) = map.get("max_producers") {
        let max = max.as_u64().unwrap_or_else(|| panic!("{what}: max_producers is not a number"));
        assembler = assembler.with_max_producers(usize::try_from(max).expect("max_producers fits a usize"));
    }
    let steps = map.get("steps").and_then(Value::as_array).unwrap_or_else(|| panic!("{what}: no steps"));
    assert!(!steps.is_empty(), "{what}: no steps");
    // The ids of the snapshot being assembled, as they came.
    let mut arrived: Vec<String> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{what} step {i}");
        let s = object(step, &["frame", "stream_ended", "events"], &at);
        let events = match (s.get("frame"), s.get("stream_ended")) {
            (Some(f), None) => {
                let f = frame(f, &at);
                let sent = match &f {
                    Frame::Chunk(c) => {
                        if c.index == 0 {
                            arrived.clear();
                        }
                        arrived.extend(c.producers.iter().map(|p| p.id.clone()));
                        c.digest
                    }
                    _ => 0,
                };
                let events = assembler.on_frame(f);
                // What a Watch says it holds (`known_digest`) is the digest the applied snapshot came with, when it
                // came in id order, as a roster server sends it.
                for event in &events {
                    if let Event::Applied(snapshot) = event
                        && sent != 0
                        && arrived.is_sorted()
                    {
                        assert_eq!(snapshot.server_digest(), sent, "{at}: server_digest");
                    }
                }
                events
            }
            (None, Some(Value::Bool(true))) => assembler.stream_ended().into_iter().map(Event::Discarded).collect(),
            _ => panic!("{at}: a step is either a frame or \"stream_ended\": true"),
        };
        let got = Value::Array(events.iter().map(event_json).collect());
        let want = s.get("events").unwrap_or_else(|| panic!("{at}: no expected events"));
        assert_eq!(&got, want, "{at}: events differ (left: the assembler, right: the vector)");
    }
    let got = assembler.applied().map_or(Value::Null, |s| snapshot_json(s));
    let want = map.get("applied").unwrap_or_else(|| panic!("{what}: no expected applied snapshot"));
    assert_eq!(&got, want, "{what}: the snapshot in force differs (left: the assembler, right: the vector)");
}

#[test]
fn every_assembly_vector_gives_its_events_and_its_snapshot_in_force() {
    let dir = vectors_dir().join("assembly");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the assembly vectors are missing from {}", dir.display());
    let mut cases = 0;
    for path in &files {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let vectors = read(path);
        let top = object(&vectors, &["description", "cases"], &file);
        let list = top.get("cases").and_then(Value::as_array).unwrap_or_else(|| panic!("{file}: no cases"));
        assert!(!list.is_empty(), "{file}: no cases");
        for case in list {
            run_case(case, &file);
            cases += 1;
        }
    }
    assert!(cases >= 30, "only {cases} assembly cases");
}

/// The random vectors (the example `feed-random-vectors`, which the Python package replays) read as strictly as the
/// golden ones, run through the same checks, repeatable from their seed, and both accepting and rejecting often.
#[test]
fn random_vectors_pass_the_golden_checks_and_both_apply_and_discard() {
    const CASES: usize = 400;
    let vectors = random_assembly_vectors(16, CASES);
    assert_eq!(vectors, random_assembly_vectors(16, CASES), "the same seed gives the same vectors");
    assert_ne!(vectors, random_assembly_vectors(17, CASES), "another seed gives other vectors");
    let top = object(&vectors, &["description", "cases"], "random vectors");
    let list = top.get("cases").and_then(Value::as_array).expect("random vectors: cases");
    assert_eq!(list.len(), CASES);
    let (mut applied, mut refused, mut reasons) = (0, 0, BTreeSet::new());
    for case in list {
        run_case(case, "random vectors (seed 16)");
        let events = case["steps"].as_array().into_iter().flatten().flat_map(|s| s["events"].as_array()).flatten();
        for event in events {
            match event["event"].as_str() {
                Some("applied") => applied += 1,
                Some("discarded") => {
                    reasons.insert(event["reason"].as_str().unwrap_or_default().to_owned());
                    refused += usize::from(!event["refused"].is_null());
                }
                _ => {}
            }
        }
    }
    let discarded_cases = list.iter().filter(|c| c.to_string().contains(r#""event":"discarded""#)).count();
    assert!(applied >= CASES / 2, "only {applied} snapshots applied in {CASES} cases");
    assert!(discarded_cases >= CASES / 4, "only {discarded_cases} of {CASES} cases discard anything");
    assert!(refused >= CASES / 10, "only {refused} complete snapshots refused in {CASES} cases");
    let every: BTreeSet<String> =
        crate::follower::assembler::DiscardReason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(reasons, every, "the random vectors discard for every reason");
}

#[test]
fn every_digest_vector_gives_its_encoding_and_its_digest() {
    let vectors = read(&vectors_dir().join("digest.json"));
    let top = object(&vectors, &["description", "cases"], "digest.json");
    let list = top.get("cases").and_then(Value::as_array).expect("digest.json: cases");
    assert!(list.len() >= 5, "digest.json: only {} cases", list.len());
    for case in list {
        let map = object(case, &["name", "producers", "encoded_hex", "digest"], "digest.json");
        let what = format!("digest.json: {}", map.get("name").and_then(Value::as_str).expect("a case name"));
        let entries = producers(map, "producers", &what);
        let mut encoded = Vec::new();
        for entry in &entries {
            prost::Message::encode_length_delimited(entry, &mut encoded).expect("a Vec grows as needed");
        }
        let hex: String = encoded.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Some(hex.as_str()), map.get("encoded_hex").and_then(Value::as_str), "{what}: encoding");
        assert_eq!(digest(&entries), uint64(map, "digest", &what), "{what}: digest");
    }
}
