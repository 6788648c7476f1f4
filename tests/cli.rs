//! The `roster` CLI against real servers (and broken ones): bounded retries (R2, R3), request ids followed
//! across both logs (R5), `roster up`, and every command's output in both formats.

mod common;

use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Proc, WAIT, roster, start_server};
use serde_json::Value;

/// The request id the CLI's attempt log lines carry (`-v`).
fn request_ids(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split("request.id=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn a_one_second_server_outage_does_not_fail_a_list_and_the_request_id_reaches_the_server_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(dir.path(), None);
    let url = format!("http://{addr}");
    let mut register = roster(&[
        "--server",
        &url,
        "producers",
        "register",
        "--id",
        "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "--address",
        "127.0.0.1:9100",
    ]);
    register.assert_ok();

    server.kill9();
    let mut list = Proc::start("roster", &["--server", &url, "-v", "--output", "json", "producers", "list"]);
    // The outage itself: one second of no server.
    std::thread::sleep(Duration::from_secs(1));
    let (server, _) = start_server(dir.path(), Some(&addr));
    list.assert_ok();
    assert_eq!(list.json()["count"], 1, "the producer survived and is listed");

    let stderr = list.stderr();
    assert!(stderr.contains("attempt failed; retrying"), "the outage was ridden out by retries:\n{stderr}");
    let ids = request_ids(&stderr);
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| *id == ids[0]), "every attempt carries the same request id: {ids:?}");
    // The attempt that reached the server is in its log under that id, with its attempt count.
    let deadline = Instant::now() + WAIT;
    while !server.stderr().lines().any(|l| l.contains(&ids[0]) && l.contains("ListProducers")) {
        assert!(Instant::now() < deadline, "request id {} not in the server log:\n{}", ids[0], server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = server.stderr().lines().find(|l| l.contains(&ids[0])).unwrap().to_owned();
    assert!(!line.contains("rpc.previous_attempts=0"), "the server saw a retry: {line}");
}

#[test]
fn with_nothing_listening_the_cli_gives_up_after_five_attempts_with_a_clear_message() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut cli = roster(&["--server", &url, "producers", "list"]);
    let status = cli.wait_exit();
    assert!(!status.success());
    let stderr = cli.stderr();
    let line =
        stderr.lines().find(|l| l.starts_with("roster: ")).unwrap_or_else(|| panic!("one error line:\n{stderr}"));
    assert!(line.contains("ListProducers: gave up after 5 attempts over"), "{line}");
    assert!(line.contains("Unavailable") && line.contains("Connection refused"), "the last cause is named: {line}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_server_that_accepts_and_closes_sees_at_most_five_attempts_never_five_in_a_second() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let times = accepted.clone();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let acceptor = std::thread::spawn(move || {
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    times.lock().unwrap().push(Instant::now());
                    drop(conn);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    let mut cli = roster(&["--server", &url, "-v", "producers", "list"]);
    let status = cli.wait_exit();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    acceptor.join().unwrap();
    assert!(!status.success());
    let stderr = cli.stderr();
    assert!(stderr.contains("gave up after 5 attempts"), "{stderr}");
    let times = accepted.lock().unwrap().clone();
    assert!(!times.is_empty() && times.len() <= 5, "{} connections for 5 attempts", times.len());
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().filter(|u| u.duration_since(*t) < Duration::from_secs(1)).count();
        assert!(within <= 5, "{within} connections within one second");
    }
}

#[test]
fn invalid_argument_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(dir.path(), None);
    let url = format!("http://{addr}");
    // The CLI checks ids and URLs itself (a usage error, exit 2); an address is the server's to judge.
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let mut cli = roster(&["--server", &url, "-v", "producers", "register", "--id", id, "--address", "127.0.0.1:0"]);
    assert_eq!(cli.wait_exit().code(), Some(1));
    let stderr = cli.stderr();
    let line = stderr.lines().find(|l| l.starts_with("roster: ")).unwrap();
    assert!(
        line.contains("RegisterProducer") && line.contains("InvalidArgument") && line.contains("address: "),
        "{line}"
    );
    assert!(!stderr.contains("retrying"), "not retried:\n{stderr}");
    assert!(stderr.contains("attempt=1") && !stderr.contains("attempt=2"), "{stderr}");
}

#[test]
fn every_command_answers_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (collector, status_addr, collector_id) = common::start_collector(&url, &dir.path().join("collector"));
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let run = |format: &str, args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--output", format];
        all.extend_from_slice(args);
        let mut cli = roster(&all);
        cli.assert_ok();
        cli
    };

    let register =
        ["producers", "register", "--id", id, "--address", "127.0.0.1:9100", "--interval", "1s", "--label", "job=test"];
    assert_eq!(run("json", &register).json()["producer"]["labels"]["job"], "test");
    assert!(run("table", &register).stdout().contains("renewed"));

    let list = run("json", &["producers", "list"]).json();
    assert_eq!(list["count"], 1);
    assert_eq!(list["producers"][0]["id"], id);
    assert!(run("table", &["producers", "list"]).stdout().contains("ASSIGNED TO"));

    assert_eq!(run("json", &["producers", "show", id]).json()["address"], "127.0.0.1:9100");
    assert!(run("table", &["producers", "show", id]).stdout().contains(id));

    // The collector takes the producer and reports it: wait for convergence.
    let deadline = Instant::now() + WAIT;
    loop {
        let collectors = run("json", &["collectors", "list"]).json();
        if collectors["collectors"][0]["converged"] == true {
            assert_eq!(collectors["collectors"][0]["id"], collector_id.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "collector never converged: {collectors}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(run("table", &["collectors", "list"]).stdout().contains("CONVERGED"));

    let assignment = run("json", &["assignment", "show", "--collector", &collector_id]).json();
    assert_eq!(assignment["producers"][0]["id"], id);
    assert!(run("table", &["assignment", "show", "--collector", &collector_id]).stdout().contains(id));

    let status = run("json", &["status", "--collector", &status_addr]).json();
    assert_eq!(status["collector_id"], collector_id.as_str());
    assert!(run("table", &["status", "--collector", &status_addr]).stdout().contains("CONNECTED"));

    // Observe-only: the collector's own feed, without disturbing it.
    let watched = run("json", &["watch", "--collector", &collector_id, "--count", "1"]);
    let applied: Vec<Value> = watched.stdout().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(applied.iter().any(|e| e["event"] == "applied" && e["producers"][0]["id"] == id), "{}", watched.stdout());
    assert!(
        run("table", &["watch", "--collector", &collector_id, "--count", "1"]).stdout().contains("applied generation")
    );

    assert_eq!(run("json", &["producers", "deregister", id]).json()["existed"], true);
    assert!(run("table", &["producers", "deregister", id]).stdout().contains("was not registered"));
    drop(collector);
}

#[test]
fn roster_up_runs_the_job_and_sigint_stops_every_part_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = common::start_roster_up(
        dir.path(),
        &["--metrics-listen", "off", "--collector-metrics-listen", "off", "--producers", "2", "--interval", "200ms"],
    );
    let sink = dir.path().join("collector/samples.jsonl");
    let deadline = Instant::now() + WAIT;
    loop {
        let producers: std::collections::BTreeSet<String> = std::fs::read_to_string(&sink)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["producer_id"].as_str().map(str::to_owned))
            .collect();
        if producers.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no samples from both producers; stdout:\n{}\nstderr:\n{}",
            up.stdout(),
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up.stdout().contains("roster is up"), "{}", up.stdout());
    up.signal("-INT");
    let status = up.wait_exit();
    assert!(status.success(), "exit {status}; stderr:\n{}", up.stderr());
    assert!(up.stdout().contains("stopped"), "{}", up.stdout());
}

/// Runs `roster ARGS`, which must stop at start (within seconds, not the harness's minute) with clap's usage error,
/// exit code 2; returns its stderr.
fn refused_at_start(mut cli: Proc, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = cli.child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "roster {args:?} did not stop at start; stderr:\n{}", cli.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the reader threads take the last lines.
    std::thread::sleep(Duration::from_millis(50));
    let stderr = cli.stderr();
    assert_eq!(status.code(), Some(2), "roster {args:?}: stdout:\n{}\nstderr:\n{stderr}", cli.stdout());
    stderr
}

/// `roster ARGS` (against a server that is not there: a refused flag is refused before anything is dialled).
fn cli_refused(args: &[&str]) -> String {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let all = [&["--server", url.as_str()][..], args].concat();
    refused_at_start(Proc::start("roster", &all), &all)
}

const REGISTER: [&str; 6] =
    ["producers", "register", "--id", "67e55044-10b1-426f-9247-bb680e5fe0c8", "--address", "127.0.0.1:9100"];

/// An interval the server would refuse (it keeps 100ms to 1h) stopped neither `roster up` nor `roster
/// demo-producer`: both ran, registering nothing, the refusal retried for ever behind a hidden warning.
#[test]
fn up_and_demo_producer_refuse_an_interval_the_server_would_refuse_naming_the_flag_and_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--metrics-listen", "off", "--collector-metrics-listen", "off", "--interval", "50ms"];
    let stderr = refused_at_start(common::start_roster_up(dir.path(), &extra), &extra);
    assert!(stderr.contains("--interval") && stderr.contains("out of range: use 100ms to 1h"), "{stderr}");
    assert!(!dir.path().join("server").exists(), "nothing was started");
    for interval in ["0s", "99ms", "2h", "99999y"] {
        let stderr = cli_refused(&["demo-producer", "--interval", interval]);
        assert!(stderr.contains("'--interval <INTERVAL>'") && stderr.contains("use 100ms to 1h"), "{stderr}");
    }
    let stderr = cli_refused(&["demo-producer", "--lease", "1s"]);
    assert!(stderr.contains("--lease") && stderr.contains("use 10s to 1day"), "{stderr}");
}

/// A registration refused for good (here: no credentials) is an ERROR, which the CLI's default log level shows;
/// it was a WARN, and `roster demo-producer` said nothing while it registered nothing.
#[test]
fn a_demo_producer_refused_for_good_says_so_at_the_default_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = common::ServerTokens::new(dir.path());
    let (_server, addr) = common::start_secured_server(&dir.path().join("server"), &tokens, &[]);
    let producer = Proc::start("roster", &["--server", &format!("http://{addr}"), "demo-producer"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stderr = producer.stderr();
        if let Some(line) = stderr.lines().find(|l| l.contains("registration refused")) {
            assert!(line.contains("ERROR") && line.contains("Unauthenticated"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "the refusal was not shown; stderr:\n{stderr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--timeout 99999999y` panicked in tonic (exit 101) and a huge `--interval`, `--lease` or `--scrape-timeout`
/// failed with exit 1 and "is too long": every duration flag is bounded at parse time (exit 2, naming the flag).
#[test]
fn huge_durations_are_usage_errors_naming_the_flag() {
    for timeout in ["99999999y", "2h"] {
        let stderr = cli_refused(&["--timeout", timeout, "producers", "list"]);
        assert!(stderr.contains("'--timeout <TIMEOUT>'") && stderr.contains("at most 1h"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let stderr = cli_refused(&[&REGISTER[..], &["--interval", "99999y"]].concat());
    assert!(stderr.contains("'--interval <INTERVAL>'") && stderr.contains("use 100ms to 1h"), "{stderr}");
    let stderr = cli_refused(&[&REGISTER[..], &["--lease", "99999y"]].concat());
    assert!(stderr.contains("'--lease <LEASE>'") && stderr.contains("use 10s to 1day"), "{stderr}");
    let stderr = cli_refused(&[&REGISTER[..], &["--kind", "prometheus", "--scrape-timeout", "99999y"]].concat());
    assert!(stderr.contains("'--scrape-timeout <SCRAPE_TIMEOUT>'") && stderr.contains("out of range"), "{stderr}");
}

/// A label that breaks the rules was refused only after parsing, with exit 1: it is a usage error (exit 2) naming
/// the flag, with the same explanation.
#[test]
fn a_bad_label_is_a_usage_error_naming_the_flag() {
    let stderr = cli_refused(&[&REGISTER[..], &["--label", "=v"]].concat());
    assert!(stderr.contains("'--label <LABEL>'") && stderr.contains("a label name is empty"), "{stderr}");
    let stderr = cli_refused(&[&REGISTER[..], &["--label", "a b=c"]].concat());
    assert!(
        stderr.contains("'--label <LABEL>'") && stderr.contains("label \"a b\": name must match [a-zA-Z_]"),
        "{stderr}"
    );
    let stderr = cli_refused(&["demo-producer", "--label", "1x=y"]);
    assert!(stderr.contains("'--label <LABEL>'") && stderr.contains("name must match"), "{stderr}");
}

/// `--count` is how many applied snapshots to wait for: 0 printed one and exited 0.
#[test]
fn watch_count_zero_is_a_usage_error() {
    let stderr = cli_refused(&["watch", "--collector", "11111111-1111-1111-1111-111111111111", "--count", "0"]);
    assert!(stderr.contains("'--count <COUNT>'") && stderr.contains("must be 1 or more"), "{stderr}");
}

/// An `https://` address of a gRPC producer is refused, but TLS to producers exists: the collector's
/// `--producer-tls`; the message said collection over TLS was not supported.
#[test]
fn an_https_producer_address_points_to_the_collectors_producer_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(dir.path(), None);
    let url = format!("http://{addr}");
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let mut cli =
        roster(&["--server", &url, "producers", "register", "--id", id, "--address", "https://127.0.0.1:9101"]);
    assert_eq!(cli.wait_exit().code(), Some(1));
    let stderr = cli.stderr();
    assert!(stderr.contains("InvalidArgument: address: \"https://127.0.0.1:9101\""), "{stderr}");
    assert!(stderr.contains("give host:port") && stderr.contains("--producer-tls"), "{stderr}");
    assert!(!stderr.contains("not support"), "{stderr}");
}

/// `roster watch` of a server that is not there logged "stream lost …; reconnecting" for ever, ignoring
/// `--max-attempts`: a script waiting on it hung. It gives up like every other command, naming the server, the
/// attempts and the last cause, with exit code 1.
#[test]
fn watch_with_nothing_listening_gives_up_after_max_attempts_naming_the_server_and_the_cause() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let started = Instant::now();
    let collector = "11111111-1111-1111-1111-111111111111";
    let mut cli = roster(&["--server", &url, "--max-attempts", "3", "watch", "--collector", collector, "--count", "1"]);
    assert_eq!(cli.wait_exit().code(), Some(1), "stdout:\n{}\nstderr:\n{}", cli.stdout(), cli.stderr());
    let stderr = cli.stderr();
    let line =
        stderr.lines().find(|l| l.starts_with("roster: ")).unwrap_or_else(|| panic!("one error line:\n{stderr}"));
    assert!(line.contains("Watch: gave up after 3 attempts over"), "{line}");
    assert!(line.contains(&format!("--server {url}")) && line.contains("Connection refused"), "{line}");
    assert_eq!(cli.stdout().matches("stream lost").count(), 2, "the two failures before the last are shown");
    assert!(started.elapsed() < Duration::from_secs(20), "gave up in {:?}", started.elapsed());
}

/// The count of `roster watch`'s failed attempts starts again once a stream opens: a watch that is following rides
/// out outages one after the other, each shorter than `--max-attempts` failures, although together they are more.
#[test]
fn a_watch_that_is_following_rides_out_outages_each_within_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(&dir.path().join("server"), None);
    let url = format!("http://{addr}");
    let (_collector, _, collector_id) = common::start_collector(&url, &dir.path().join("collector"));
    let mut watch =
        Proc::start("roster", &["--server", &url, "--max-attempts", "5", "watch", "--collector", &collector_id]);
    let wait_lines = |watch: &Proc, what: &str, count: usize| {
        let deadline = Instant::now() + WAIT;
        while watch.stdout().matches(what).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {count} {what:?} lines; stdout:\n{}\nstderr:\n{}",
                watch.stdout(),
                watch.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_lines(&watch, "connected to", 1);
    // The first outage: the stream lost, then the server back before the retries run out (it has at least 1.5 s:
    // the next four delays are at least 100, 200, 400 and 800 ms).
    server.kill9();
    wait_lines(&watch, "stream lost", 1);
    server = start_server(&dir.path().join("server"), Some(&addr)).0;
    wait_lines(&watch, "connected to", 2);
    let lost = watch.stdout().matches("stream lost").count();
    // The second: four failures, which with the first outage's make at least five, then the server back (the next
    // delay is at least 1.6 s).
    server.kill9();
    wait_lines(&watch, "stream lost", lost + 4);
    let _server = start_server(&dir.path().join("server"), Some(&addr));
    wait_lines(&watch, "connected to", 3);
    assert!(watch.child.try_wait().unwrap().is_none(), "the watch gave up:\n{}", watch.stderr());
    watch.signal("-INT");
    let status = watch.wait_exit();
    assert!(status.success(), "exit {status}; stderr:\n{}", watch.stderr());
}

/// "gave up after 1 attempts": the count and its noun agree.
#[test]
fn giving_up_after_one_attempt_says_1_attempt() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let mut cli = roster(&["--server", &url, "--max-attempts", "1", "producers", "list"]);
    assert_eq!(cli.wait_exit().code(), Some(1));
    let stderr = cli.stderr();
    assert!(stderr.contains("ListProducers: gave up after 1 attempt over"), "{stderr}");
    assert!(!stderr.contains("1 attempts"), "{stderr}");
    let collector = "11111111-1111-1111-1111-111111111111";
    let mut cli = roster(&["--server", &url, "--max-attempts", "1", "watch", "--collector", collector]);
    assert_eq!(cli.wait_exit().code(), Some(1));
    let stderr = cli.stderr();
    assert!(stderr.contains("Watch: gave up after 1 attempt over"), "{stderr}");
    assert!(!stderr.contains("1 attempts"), "{stderr}");
}

/// A busy metrics address of `roster up` failed only after "roster is up: … Ctrl-C stops everything." was printed;
/// it stops `roster up` before that, with the error and exit code of a busy `--listen`, and starts nothing.
#[test]
fn roster_up_with_a_busy_metrics_address_fails_before_saying_it_is_up_as_a_busy_listen_does() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let free = || format!("127.0.0.1:{}", common::free_port());
    let up = |flag: &str, ports: [String; 4]| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let [listen, collector, metrics, collector_metrics] = ports;
        let mut up = Proc::start(
            "roster",
            &[
                "up",
                "--data-dir",
                &data,
                "--listen",
                &listen,
                "--collector-listen",
                &collector,
                "--metrics-listen",
                &metrics,
                "--collector-metrics-listen",
                &collector_metrics,
                "--producers",
                "0",
            ],
        );
        let code = up.wait_exit().code();
        let stderr = up.stderr();
        assert!(!up.stdout().contains("roster is up"), "{flag}: stdout:\n{}", up.stdout());
        assert!(stderr.contains(&format!("cannot listen on {busy} (use {flag}): Address already in use")), "{stderr}");
        assert!(!dir.path().join("server").exists(), "{flag}: nothing was started");
        code
    };
    let listen = up("--listen", [busy.clone(), free(), free(), free()]);
    assert_eq!(listen, Some(1));
    assert_eq!(up("--metrics-listen", [free(), free(), busy.clone(), free()]), listen);
    assert_eq!(up("--collector-metrics-listen", [free(), free(), free(), busy.clone()]), listen);
}
