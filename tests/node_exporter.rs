//! Debian's node_exporter 1.5, a real Prometheus exporter, scraped by a real roster-collector process (issue 13,
//! item 5): registered with one `roster producers register --kind prometheus` command, its series reach the sink
//! with the target labels (`instance`, `job`), `up` 1 and the report series; an exposed `instance` is kept as
//! `exported_instance`; a series that vanishes from its textfile collector is ended by a staleness marker at the
//! scrape that missed it; when node_exporter stops, `up` is 0 and every series of its last scrape ends at the
//! failed scrape, once; deregistered, its report series end too.
//!
//! node_exporter runs with the `loadavg`, `meminfo` and `textfile` collectors only; the textfile collector, which
//! reads `*.prom` files at each scrape, is how the test adds and removes series of a real exporter.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::{collections::BTreeSet, path::Path};

use common::{roster, sink_lines, start_collector, start_node_exporter, start_server, status, wait_for, wait_status};
use serde_json::{Value, json};

/// The node_exporter's producer id.
const ID: &str = "5d0c3a8e-6f1b-4c2d-9e7a-0b1c2d3e4f50";

/// The report series the collector writes beside each scrape.
const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Writes the textfile collector's file at once, as node_exporter's documentation asks: a whole file renamed into
/// place, so a scrape never reads half of it (node_exporter reads only `*.prom` files: the part file is ignored).
fn write_textfile(dir: &Path, body: &str) {
    let part = dir.join("roster.prom.part");
    std::fs::write(&part, body).unwrap();
    std::fs::rename(&part, dir.join("roster.prom")).unwrap();
}

/// The node_exporter's samples named `name`.
fn series<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["producer_id"] == ID && l["name"] == name).collect()
}

/// The times of its scrapes whose `up` was `value`, in order.
fn scrapes(lines: &[Value], value: f64) -> Vec<u64> {
    let mut times: Vec<u64> = series(lines, "up")
        .iter()
        .filter(|up| up["value"] == value)
        .filter_map(|up| up["time_unix_ms"].as_u64())
        .collect();
    times.sort_unstable();
    times
}

/// What it wrote at `time_ms` other than the report series, as (name, labels, value).
fn scraped_at(lines: &[Value], time_ms: u64) -> Vec<(&str, &Value, &Value)> {
    lines
        .iter()
        .filter(|l| l["producer_id"] == ID && l["time_unix_ms"] == time_ms)
        .filter(|l| !REPORT.contains(&l["name"].as_str().unwrap()))
        .map(|l| (l["name"].as_str().unwrap(), &l["labels"], &l["value"]))
        .collect()
}

/// The staleness markers of `name`.
fn markers<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    series(lines, name).into_iter().filter(|s| s["value"] == "stale").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_registered_with_one_cli_command_is_scraped_with_target_labels_up_and_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let collector_dir = dir.path().join("c");
    let (_collector, status_addr, _) = start_collector(&url, &collector_dir);
    let sink = collector_dir.join("samples.jsonl");
    let textfiles = dir.path().join("textfiles");
    std::fs::create_dir(&textfiles).unwrap();
    // An exposed `instance`, and a label value with each escape of the text format.
    write_textfile(
        &textfiles,
        "roster_test_gauge{instance=\"spoofed\",v=\"a\\\"b\\\\c\\nd\"} 1\nroster_test_vanishing 2\n",
    );
    let (mut exporter, exporter_addr) = start_node_exporter(&textfiles);

    // One command, as a newcomer would type it.
    let mut register = roster(&[
        "--server",
        &url,
        "producers",
        "register",
        "--id",
        ID,
        "--kind",
        "prometheus",
        "--address",
        &exporter_addr,
        "--interval",
        "1s",
        "--label",
        "job=node",
    ]);
    register.assert_ok();

    wait_for("node_exporter scraped, up 1, with its own and its textfile's series", || {
        let lines = sink_lines(&sink);
        !scrapes(&lines, 1.0).is_empty()
            && !series(&lines, "node_load1").is_empty()
            && !series(&lines, "roster_test_gauge").is_empty()
    })
    .await;
    let lines = sink_lines(&sink);
    let target = json!({"instance": exporter_addr, "job": "node"});
    let first = scrapes(&lines, 1.0)[0];
    for name in REPORT {
        let report = series(&lines, name);
        assert!(report.iter().any(|r| r["time_unix_ms"] == first && r["labels"] == target), "{name}: {report:?}");
    }
    let load = series(&lines, "node_load1")[0];
    assert_eq!(load["labels"], target, "{load}");
    assert_eq!(load["time_unix_ms"], first, "scraped at the tick's time");
    let gauge = series(&lines, "roster_test_gauge")[0];
    assert_eq!(
        gauge["labels"],
        json!({"instance": exporter_addr, "job": "node", "exported_instance": "spoofed", "v": "a\"b\\c\nd"}),
        "{gauge}"
    );
    // A summary, node_exporter's own: its quantiles, sum and count are parsed from the real body.
    assert!(series(&lines, "go_gc_duration_seconds").iter().any(|s| s["labels"]["quantile"] == "0.5"));
    assert!(!series(&lines, "go_gc_duration_seconds_count").is_empty());
    // The report counts what was written: every sample of the scrape, all of them new at the first.
    let written = scraped_at(&lines, first).len();
    let reported =
        |name: &str| series(&lines, name).iter().find(|r| r["time_unix_ms"] == first).unwrap()["value"].clone();
    assert_eq!(reported("scrape_samples_scraped"), json!(written as f64));
    assert_eq!(reported("scrape_series_added"), json!(written as f64));
    eprintln!(
        "figure: node_exporter: {written} samples a scrape, scraped in {} s",
        reported("scrape_duration_seconds")
    );

    // A series vanishes from the textfile (and the gauge changes): the next scrape ends it, and only it.
    write_textfile(&textfiles, "roster_test_gauge{instance=\"spoofed\",v=\"a\\\"b\\\\c\\nd\"} 3\n");
    wait_for("roster_test_vanishing ended", || !markers(&sink_lines(&sink), "roster_test_vanishing").is_empty()).await;
    let lines = sink_lines(&sink);
    let vanished = markers(&lines, "roster_test_vanishing");
    assert_eq!(vanished.len(), 1, "{vanished:?}");
    let ended = vanished[0]["time_unix_ms"].as_u64().unwrap();
    assert!(scrapes(&lines, 1.0).contains(&ended), "ended by a successful scrape, at its time");
    let at_end = scraped_at(&lines, ended);
    assert!(at_end.contains(&("roster_test_gauge", &gauge["labels"], &json!(3.0))), "the gauge goes on: {at_end:?}");
    let stale: Vec<&str> = at_end.iter().filter(|(_, _, v)| *v == "stale").map(|(n, _, _)| *n).collect();
    assert_eq!(stale, ["roster_test_vanishing"], "only the vanished series ends");

    // node_exporter stops: the next scrape fails, `up` 0, and every series of the last good scrape ends there.
    exporter.signal("-TERM");
    exporter.wait_exit();
    let failed_since_the_last_good = |lines: &[Value]| -> (u64, Vec<u64>) {
        let last_good = *scrapes(lines, 1.0).last().unwrap();
        (last_good, scrapes(lines, 0.0).into_iter().filter(|t| *t > last_good).collect())
    };
    wait_for("two failed scrapes", || failed_since_the_last_good(&sink_lines(&sink)).1.len() >= 2).await;
    let lines = sink_lines(&sink);
    let (last_good, failed) = failed_since_the_last_good(&lines);
    let alive: BTreeSet<(&str, String)> = scraped_at(&lines, last_good)
        .into_iter()
        .filter(|(_, _, value)| *value != "stale")
        .map(|(name, labels, _)| (name, labels.to_string()))
        .collect();
    let ended: BTreeSet<(&str, String)> = scraped_at(&lines, failed[0])
        .into_iter()
        .filter(|(_, _, value)| *value == "stale")
        .map(|(name, labels, _)| (name, labels.to_string()))
        .collect();
    assert_eq!(ended, alive, "every series of the last good scrape ends at the first failed one");
    assert!(scraped_at(&lines, failed[1]).is_empty(), "a second failure ends nothing more");
    assert_eq!(markers(&lines, "roster_test_gauge").len(), 1);
    let producer = wait_status(&status_addr, "the failures counted", |s| {
        s.producers.iter().any(|p| p.id == ID && p.failures >= 2)
    })
    .await
    .producers
    .into_iter()
    .find(|p| p.id == ID)
    .unwrap();
    assert!(producer.last_error.contains("Connection refused"), "{}", producer.last_error);
    eprintln!(
        "figure: node_exporter stopped: {} series ended at once; {} failures, last error: {}",
        ended.len(),
        producer.failures,
        producer.last_error
    );

    // Deregistered: it leaves the assignment, and its report series end.
    let mut deregister = roster(&["--server", &url, "producers", "deregister", ID]);
    deregister.assert_ok();
    wait_for("every report series ended", || {
        let lines = sink_lines(&sink);
        REPORT.iter().all(|name| !markers(&lines, name).is_empty())
    })
    .await;
    let lines = sink_lines(&sink);
    let retired = markers(&lines, "up")[0]["time_unix_ms"].as_u64().unwrap();
    assert!(retired > *failed.last().unwrap(), "after its last scrape");
    for name in REPORT {
        let ended = markers(&lines, name);
        assert_eq!(ended.len(), 1, "{name}: {ended:?}");
        assert_eq!(ended[0]["time_unix_ms"], retired, "{name}");
        assert_eq!(ended[0]["labels"], target, "{name}");
    }
    wait_status(&status_addr, "the producer gone from the collector", |s| s.producers.iter().all(|p| p.id != ID)).await;
    let left = status(&status_addr).await.applied_producer_count;
    assert_eq!(left, 0);
}
