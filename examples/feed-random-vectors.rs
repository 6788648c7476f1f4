//! Writes random assembly vectors of the feed: `cases` frame sequences from `seed`, each with the events and the
//! snapshot in force that roster's Rust assembler gives, in the schema of `testdata/feed/assembly/`
//! (`testdata/README.md`). The Python package replays them (python/tests/test_feed_vectors.py, run by
//! scripts/test), so both assemblers are shown to accept and reject the same sequences (issue 16).
//!
//! ```text
//! cargo run --example feed-random-vectors -- --seed 16 --cases 2000 [--out FILE]
//! ```
//!
//! Without `--out` the JSON goes to standard output. The same seed and count write the same file.

use std::{io::Write, path::PathBuf, process::ExitCode};

// The writer and the generator are the library's test module `follower::vectors` (one writer of the form: the
// golden vectors' tests use it too); it reaches the library through these names.
use roster::{follower, pb, snapshot};

#[path = "../src/follower/vectors.rs"]
mod vectors;

const USAGE: &str = "usage: feed-random-vectors --seed S --cases N [--out FILE]";

struct Args {
    seed: u64,
    cases: usize,
    out: Option<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut seed, mut cases, mut out) = (None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seed" => seed = Some(value.parse().map_err(|e| format!("--seed {value:?}: {e} (a u64)"))?),
            "--cases" => cases = Some(value.parse().map_err(|e| format!("--cases {value:?}: {e} (a count)"))?),
            "--out" => out = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Args { seed: seed.ok_or("--seed is required")?, cases: cases.ok_or("--cases is required")?, out })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "feed-random-vectors: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let vectors = vectors::random_assembly_vectors(args.seed, args.cases);
    let mut text = serde_json::to_string_pretty(&vectors).expect("a JSON value serialises");
    text.push('\n');
    let written = match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => std::io::stdout().write_all(text.as_bytes()).map_err(|e| format!("cannot write to stdout: {e}")),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "feed-random-vectors: {e}");
            ExitCode::FAILURE
        }
    }
}
