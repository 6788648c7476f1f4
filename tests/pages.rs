//! Answers that grow with the fleet come in pages bounded by bytes, not only by count, so that no answer nears
//! gRPC's 4 MiB default message limit, which every client applies to what it receives: `ListProducers` with the
//! largest labels, and a collector's `GetStatus` with tens of thousands of producers. Each is read whole through
//! the CLI (which asks for 1000 per page) and through grpcurl (whose limit is 4 MB), against real processes.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeSet;

use common::{WAIT, roster, run_grpcurl, start_collector, start_server};
use prost::Message as _;
use roster::{message_limit::PAGE_BYTES, pb};
use roster_testkit::{largest_labels, longest_address, never_due, register_many_like};
use serde_json::{Value, json};

/// The fields around a page's producers (a token, counts, a collector's summary) are far below this.
const PAGE_OVERHEAD: usize = 16 * 1024;

fn json_stdout(cli: &mut common::Proc) -> Value {
    cli.assert_ok();
    cli.json()
}

fn ids(values: &Value) -> BTreeSet<String> {
    values.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

/// Follows a listing through grpcurl, `page_size` 1000, from the first page to an empty `nextPageToken`; returns
/// the ids listed and the number of pages. Bounded: every page but the last holds at least one producer.
fn grpcurl_all(addr: &str, method: &str, producers_key: &str, expected: usize) -> (BTreeSet<String>, usize) {
    let mut listed = BTreeSet::new();
    let mut token = String::new();
    for page in 1..=expected + 1 {
        let request = json!({"page_size": 1000, "page_token": token}).to_string();
        let answer: Value = serde_json::from_str(&run_grpcurl(addr, &["-d", &request], &[method])).unwrap();
        let before = listed.len();
        listed.extend(ids(&answer[producers_key]));
        assert!(listed.len() > before || answer[producers_key].as_array().unwrap().is_empty(), "a page repeats");
        match answer["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_owned(),
            _ => return (listed, page),
        }
    }
    panic!("{method}: more than {} pages for {expected} producers", expected + 1);
}

fn with_largest_labels() -> pb::RegisterProducerRequest {
    pb::RegisterProducerRequest { labels: largest_labels(), ..never_due() }
}

fn at_longest_address() -> pb::RegisterProducerRequest {
    pb::RegisterProducerRequest { address: longest_address(), ..never_due() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_with_the_largest_labels_are_listed_whole_by_the_cli_and_grpcurl() {
    // 450 producers of about 10.4 KB each: one page of 1000 would be about 4.7 MB.
    const N: usize = 450;
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    // One collector, live before the producers come: each is assigned to it as it registers.
    let (collector, _status_addr, collector_id) = start_collector(&url, &dir.path().join("collector"));
    let (registered, took) = register_many_like(&url, N, 16, with_largest_labels).await.unwrap();
    let registered: BTreeSet<String> = registered.into_iter().collect();
    eprintln!("figure: {N} producers with the largest labels registered in {took:?}");

    let mut list = roster(&["--server", &url, "--output", "json", "producers", "list"]);
    let listed = json_stdout(&mut list);
    assert_eq!(listed["count"], N);
    assert_eq!(ids(&listed["producers"]), registered, "`roster producers list` lists every producer once");
    assert!(listed["producers"][0]["labels"].as_object().unwrap().len() == largest_labels().len());

    let mut show = roster(&["--server", &url, "--output", "json", "assignment", "show", "--collector", &collector_id]);
    assert_eq!(ids(&json_stdout(&mut show)["producers"]), registered, "`roster assignment show` shows all");

    // Every page the server sends stays within the byte budget; together they are above the 4 MiB limit.
    let client = common::client(&url);
    let (mut token, mut pages, mut total_bytes) = (String::new(), Vec::new(), 0);
    for _ in 0..=N {
        let page = client
            .list_producers(pb::ListProducersRequest { page_size: Some(1000), page_token: token, ..Default::default() })
            .await
            .unwrap();
        let bytes = page.encoded_len();
        assert!(bytes <= PAGE_BYTES + PAGE_OVERHEAD, "a page of {} producers is {bytes} bytes", page.producers.len());
        assert_eq!(page.total_count, N as u64, "every page counts them all");
        pages.push(page.producers.len());
        total_bytes += bytes;
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(total_bytes > 4 << 20, "the listing ({total_bytes} bytes) would not fit one 4 MiB message");
    assert_eq!(pages.iter().sum::<usize>(), N);
    eprintln!("figure: {N} producers, {total_bytes} bytes in all, as pages of {pages:?} producers");

    let (listed, page_count) = grpcurl_all(&addr, "roster.v1.Registry/ListProducers", "producers", N);
    assert_eq!(listed, registered, "grpcurl lists every producer once");
    assert_eq!(page_count, pages.len());
    drop(collector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_of_a_collector_with_fifteen_thousand_producers_is_read_whole_by_the_cli_and_grpcurl() {
    // 15 000 producers at the longest address: about 305 bytes each in a status, 4.6 MB as one answer.
    const N: usize = 15_000;
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (collector, status_addr, collector_id) = start_collector(&url, &dir.path().join("collector"));
    let (registered, took) = register_many_like(&url, N, 16, at_longest_address).await.unwrap();
    let registered: BTreeSet<String> = registered.into_iter().collect();
    eprintln!("figure: {N} producers at the longest address registered in {took:?}");

    // Wait until the collector runs all of them: applied, and a collection task for each (the tasks start just
    // after the snapshot applies, so the applied count alone can be ahead of the producers the status lists).
    let client = roster::client::StatusClient::connect(
        &roster::endpoint::ServerUrl::parse_address_or_url(&status_addr).unwrap(),
        WAIT,
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = client.get_full_status().await.unwrap();
        if status.applied_producer_count == N as u64 && status.producers.len() == N {
            break;
        }
        let (applied, running) = (status.applied_producer_count, status.producers.len());
        assert!(
            std::time::Instant::now() < deadline,
            "the collector did not run all {N}: {applied} applied, {running} running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let mut cli = roster(&["--output", "json", "status", "--collector", &status_addr]);
    let status = json_stdout(&mut cli);
    assert_eq!(status["collector_id"], collector_id.as_str());
    assert_eq!(status["applied_producer_count"], N);
    assert_eq!(ids(&status["producers"]), registered, "`roster status` shows every producer once");

    // Every page stays within the byte budget and carries the whole summary; together they are above 4 MiB.
    let (mut token, mut pages, mut total_bytes) = (String::new(), Vec::new(), 0);
    for _ in 0..=N {
        let page = client.get_status(pb::GetStatusRequest { page_size: Some(1000), page_token: token }).await.unwrap();
        let bytes = page.encoded_len();
        assert!(bytes <= PAGE_BYTES + PAGE_OVERHEAD, "a page of {} producers is {bytes} bytes", page.producers.len());
        assert_eq!((page.collector_id.as_str(), page.applied_producer_count), (collector_id.as_str(), N as u64));
        pages.push(page.producers.len());
        total_bytes += bytes;
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(total_bytes > 4 << 20, "the status ({total_bytes} bytes) would not fit one 4 MiB message");
    assert_eq!(pages.iter().sum::<usize>(), N);
    eprintln!("figure: status of {N} producers, {total_bytes} bytes in all, as {} pages", pages.len());

    // grpcurl without arguments gets the first page (100 producers) and the token to go on.
    let first: Value =
        serde_json::from_str(&run_grpcurl(&status_addr, &[], &["roster.v1.CollectorStatus/GetStatus"])).unwrap();
    assert_eq!(first["producers"].as_array().unwrap().len(), 100);
    assert!(!first["nextPageToken"].as_str().unwrap_or_default().is_empty());
    let (listed, page_count) = grpcurl_all(&status_addr, "roster.v1.CollectorStatus/GetStatus", "producers", N);
    assert_eq!(listed, registered, "grpcurl reads every producer once");
    assert_eq!(page_count, pages.len());
    drop(collector);
}
