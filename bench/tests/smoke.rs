//! The benchmark harness runs, at its smoke size, against the real roster-server, roster-collector and (from
//! `$ROSTER_PROMETHEUS`, which `scripts/test` sets) Prometheus binaries: every scenario finishes
//! and reports a finite figure for every metric. Its speed is not checked here (that is `BENCHMARKS.md`'s job).

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command};

#[test]
fn every_scenario_runs_at_smoke_size_and_reports_finite_figures() {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("roster-bench");
    assert!(bin.is_file(), "{} is missing: build it with `cargo build --workspace --bins`", bin.display());
    let json = tempfile::NamedTempFile::new().unwrap();
    let output =
        Command::new(&bin).args(["--scale", "smoke", "--json"]).arg(json.path()).output().expect("roster-bench runs");
    assert!(
        output.status.success(),
        "roster-bench --scale smoke failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    let scenarios: std::collections::BTreeSet<&str> = figures.iter().map(|f| f["scenario"].as_str().unwrap()).collect();
    for scenario in [
        "chunk encoding",
        "follower assembly",
        "registrations",
        "propagation",
        "full sync, fleet",
        "full sync, one collector",
        "fan-out",
        "reconnect storm",
        "big snapshot",
        "scrape vs prometheus",
        "remote write vs prometheus",
        "tls",
        "replica registrations",
        "replica propagation",
        "replica failover",
        "renewals",
        "restart",
        "store wipe",
    ] {
        assert!(scenarios.contains(scenario), "{scenario} missing from {scenarios:?}");
    }
    for figure in &figures {
        let value = figure["value"].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value >= 0.0, "{figure}");
    }
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(table.lines().count(), figures.len() + 2, "one table row per figure:\n{table}");
}
