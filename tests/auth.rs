//! Authentication and roles (issue 15) with real processes: roster-server with `--auth-tokens`, tokens made by
//! `roster auth token`, and the CLI, grpcurl, roster-collector, roster-demo-producer and the library's client
//! calling it; and over mutual TLS, client certificates naming the caller. Every refusal is checked to leave the
//! registry as it was.

mod common;

use std::time::Duration;

use common::{
    Proc, ServerTokens, client, grpcurl_output, grpcurl_refused, roster, run_grpcurl, start_collector_with,
    start_secured_server, wait_for, wait_until,
};
use roster::{client::RosterClient, endpoint::ServerUrl, pb, retry::CallError};
use roster_testkit::{TlsSetup, Usage};
use tonic::Code;

const MINE: &str = "0b9d2a1c-0000-4000-8000-000000000001";
const MINE_TOO: &str = "0b9d2a1c-0000-4000-8000-000000000002";
const FOREIGN: &str = "7e3f0c55-0000-4000-8000-000000000001";
const COLLECTOR_A: &str = "a0000000-0000-4000-8000-00000000000a";
const COLLECTOR_B: &str = "b0000000-0000-4000-8000-00000000000b";

/// The registry as an operator's `client` reads it: every producer and every collector, in full.
async fn registry_state(client: &RosterClient) -> String {
    let producers = client.list_all_producers(String::new()).await.expect("ListProducers");
    let collectors = client.list_collectors().await.expect("ListCollectors").collectors;
    format!("{producers:?}\n{collectors:?}")
}

fn code(result: Result<impl std::fmt::Debug, CallError>) -> Code {
    result.expect_err("refused").status().code()
}

fn registration(id: &str, pinned: &str) -> pb::RegisterProducerRequest {
    pb::RegisterProducerRequest {
        producer_id: id.to_owned(),
        address: "127.0.0.1:9".to_owned(),
        interval_ms: 3_600_000,
        pinned_collector_id: pinned.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_grpcurl_call_with_a_token_and_everything_but_health_is_refused_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = ServerTokens::new(dir.path());
    let (operator, reader) = (tokens.grant("operator", Some("alice")), tokens.grant("reader", Some("dash")));
    let (_server, addr) = start_secured_server(&dir.path().join("server"), &tokens, &[]);
    let url = format!("http://{addr}");
    let op_file = operator.token_file.display().to_string();
    let reader_file = reader.token_file.display().to_string();

    let mut registered = roster(&[
        "--server",
        &url,
        "--token-file",
        &op_file,
        "producers",
        "register",
        "--id",
        FOREIGN,
        "--address",
        "127.0.0.1:9",
        "--interval",
        "1h",
    ]);
    registered.assert_ok();
    let before = registry_state(&operator.client(&url)).await;

    let mut anonymous = roster(&["--server", &url, "producers", "list"]);
    assert!(!anonymous.wait_exit().success(), "a call without a token is refused");
    assert!(anonymous.stderr().contains("no credentials"), "{}", anonymous.stderr());
    let mut listed = roster(&["--server", &url, "--token-file", &reader_file, "--output", "json", "producers", "list"]);
    listed.assert_ok();
    assert!(listed.stdout().contains(FOREIGN), "{}", listed.stdout());
    let mut pin = roster(&["--server", &url, "--token-file", &reader_file, "producers", "pin", FOREIGN, COLLECTOR_A]);
    assert!(!pin.wait_exit().success());
    assert!(
        pin.stderr().contains("reader \"dash\" may not call /roster.v1.Registry/SetProducerPin"),
        "PERMISSION_DENIED names the role and the method: {}",
        pin.stderr()
    );

    // grpcurl: -H reaches reflection too; health needs nothing.
    let listed = run_grpcurl(&addr, &["-H", &reader.header()], &["list"]);
    assert!(listed.contains("roster.v1.Registry") && listed.contains("roster.v1.AssignmentFeed"), "{listed}");
    let refused = grpcurl_refused(&addr, &[], &["list"]);
    assert!(refused.contains("Unauthenticated"), "reflection needs a credential by default: {refused}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap(),
    );
    let answer = health.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("health needs nothing");
    assert_eq!(answer.get_ref().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    let producers = run_grpcurl(&addr, &["-H", &reader.header()], &["roster.v1.Registry/ListProducers"]);
    assert!(producers.contains(FOREIGN), "{producers}");
    let forget = format!(r#"{{"collector_id":"{COLLECTOR_A}"}}"#);
    let refused =
        grpcurl_refused(&addr, &["-H", &reader.header(), "-d", &forget], &["roster.v1.Registry/ForgetCollector"]);
    assert!(refused.contains("PermissionDenied") && refused.contains("ForgetCollector"), "{refused}");
    let deregister = format!(r#"{{"producer_id":"{FOREIGN}"}}"#);
    let refused = grpcurl_refused(&addr, &["-d", &deregister], &["roster.v1.Registry/DeregisterProducer"]);
    assert!(refused.contains("Unauthenticated"), "{refused}");

    assert_eq!(registry_state(&operator.client(&url)).await, before, "no refusal changed the registry");

    // With --open-reflection, tools that cannot send credentials to reflection (grpcurl -rpc-header) work.
    let (_open, open_addr) = start_secured_server(&dir.path().join("open"), &tokens, &["--open-reflection"]);
    let health = run_grpcurl(&open_addr, &[], &["grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
    let producers = run_grpcurl(&open_addr, &["-rpc-header", &reader.header()], &["roster.v1.Registry/ListProducers"]);
    assert!(producers.contains('{'), "{producers}");
    let refused = grpcurl_refused(&open_addr, &[], &["roster.v1.Registry/ListProducers"]);
    assert!(refused.contains("Unauthenticated"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_token_touches_only_its_ids_never_pins_and_an_operator_token_can() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = ServerTokens::new(dir.path());
    let operator = tokens.grant("operator", None);
    let exact = tokens.grant("producer", Some(MINE));
    let prefix = tokens.grant("producer", Some("0b9d2a1c-*"));
    let (_server, addr) = start_secured_server(&dir.path().join("server"), &tokens, &[]);
    let url = format!("http://{addr}");
    let (op, mine) = (operator.client(&url), exact.client(&url));
    op.register_producer(registration(FOREIGN, "")).await.expect("an operator registers any id");
    mine.register_producer(registration(MINE, "")).await.expect("a producer registers its own id");

    let before = registry_state(&operator.client(&url)).await;
    assert_eq!(code(mine.register_producer(registration(MINE, COLLECTOR_A)).await), Code::PermissionDenied);
    assert_eq!(code(mine.register_producer(registration(FOREIGN, "")).await), Code::PermissionDenied);
    assert_eq!(code(mine.register_producer(registration(MINE_TOO, "")).await), Code::PermissionDenied);
    let refused = mine.deregister_producer(FOREIGN.to_owned()).await.expect_err("a foreign id");
    assert_eq!(refused.status().code(), Code::PermissionDenied);
    assert!(refused.status().message().contains(&format!("producer {FOREIGN} is outside its binding")), "{refused}");
    assert_eq!(code(mine.set_producer_pin(MINE.to_owned(), COLLECTOR_A.to_owned()).await), Code::PermissionDenied);
    assert_eq!(code(mine.list_collectors().await), Code::PermissionDenied);
    assert_eq!(code(client(&url).deregister_producer(FOREIGN.to_owned()).await), Code::Unauthenticated);
    assert_eq!(registry_state(&operator.client(&url)).await, before, "no refusal changed the registry");

    // A prefix binding covers every id under it, and nothing else.
    let by_prefix = prefix.client(&url);
    by_prefix.register_producer(registration(MINE_TOO, "")).await.expect("an id under the prefix");
    assert_eq!(code(by_prefix.deregister_producer(FOREIGN.to_owned()).await), Code::PermissionDenied);
    by_prefix.deregister_producer(MINE_TOO.to_owned()).await.expect("an id under the prefix");

    // The operator may pin and deregister anything.
    op.set_producer_pin(FOREIGN.to_owned(), COLLECTOR_A.to_owned()).await.expect("an operator pins");
    assert!(op.deregister_producer(FOREIGN.to_owned()).await.expect("an operator deregisters").existed);

    // roster-demo-producer sends its token: registered under its own id, refused under another.
    let token = exact.token_file.display().to_string();
    let _mine = Proc::start("roster-demo-producer", &["--server", &url, "--id", MINE, "--token-file", &token]);
    let foreign = Proc::start("roster-demo-producer", &["--server", &url, "--id", FOREIGN, "--token-file", &token]);
    wait_until(
        "the demo producer renewing its registration",
        || async { op.get_producer(MINE.to_owned()).await.map(|p| p.address) },
        |address| address.as_ref().is_ok_and(|a| a != "127.0.0.1:9"),
    )
    .await
    .expect("the producer");
    wait_for("the foreign demo producer refused", || foreign.stderr().contains("PermissionDenied")).await;
    assert_eq!(code(op.get_producer(FOREIGN.to_owned()).await), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_whose_token_names_another_id_is_refused_its_watch_until_it_has_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = ServerTokens::new(dir.path());
    let operator = tokens.grant("operator", None);
    let (other, own) = (tokens.grant("collector", Some(COLLECTOR_B)), tokens.grant("collector", Some(COLLECTOR_A)));
    let (_server, addr) = start_secured_server(&dir.path().join("server"), &tokens, &[]);
    let url = format!("http://{addr}");
    operator.client(&url).register_producer(registration(FOREIGN, "")).await.unwrap();
    let before = registry_state(&operator.client(&url)).await;

    // The collector's own token file first holds the other collector's token.
    let token_file = dir.path().join("collector-token");
    std::fs::write(&token_file, &other.token).unwrap();
    let token = token_file.display().to_string();
    let data = dir.path().join("collector");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("collector-id"), COLLECTOR_A).unwrap();
    let (collector, status_addr, id) =
        start_collector_with(&url, &data, &["--token-file", &token, "--reconnect-max-delay", "1s"]);
    assert_eq!(id, COLLECTOR_A);
    let refused = format!("collector {COLLECTOR_B} may not call /roster.v1.AssignmentFeed/Watch");
    wait_for("the collector's feed refused", || collector.stderr().contains(&refused)).await;
    assert!(collector.stderr().contains("the server refused this collector's feed"), "{}", collector.stderr());
    let status = common::status(&status_addr).await;
    assert!(status.feed_refused.starts_with("PermissionDenied: "), "its status says so too: {}", status.feed_refused);
    assert_eq!(registry_state(&operator.client(&url)).await, before, "a refused Watch makes no collector live");

    // Its own token, written to the same file, is read again: the feed opens without a restart.
    std::fs::write(&token_file, &own.token).unwrap();
    wait_until(
        "the collector live with its own token",
        || async { operator.client(&url).list_collectors().await.map(|l| l.collectors) },
        |listed| listed.as_ref().is_ok_and(|c| c.iter().any(|c| c.id == COLLECTOR_A && c.open_streams > 0)),
    )
    .await
    .expect("the collectors");
    wait_until(
        "the collector's report of what it applied",
        || async { operator.client(&url).list_collectors().await.map(|l| l.collectors) },
        |listed| listed.as_ref().is_ok_and(|c| c.iter().any(|c| c.id == COLLECTOR_A && c.reported_generation >= 1)),
    )
    .await
    .expect("the collectors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_removed_from_the_file_stops_working_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = ServerTokens::new(dir.path());
    let (operator, reader) = (tokens.grant("operator", None), tokens.grant("reader", None));
    let (server, addr) = start_secured_server(&dir.path().join("server"), &tokens, &[]);
    let url = format!("http://{addr}");
    let reading: RosterClient = reader.client(&url);
    reading.list_collectors().await.expect("the reader's token works");

    tokens.revoke(&reader);
    wait_until(
        "the revoked token refused",
        || async { reading.list_collectors().await.map_err(|e| e.status().code()) },
        |answer| *answer == Err(Code::Unauthenticated),
    )
    .await
    .expect_err("refused");
    operator.client(&url).list_collectors().await.expect("the other tokens stay");

    // A bad edit is logged, naming the line, and the file read before stays in force.
    let good = std::fs::read_to_string(&tokens.path).unwrap();
    std::fs::write(&tokens.path, format!("{good}admin sha256:00\n")).unwrap();
    let lines = good.lines().count() + 1;
    wait_for("the bad token file logged", || server.stderr().contains(&format!("line {lines}: role: \"admin\""))).await;
    operator.client(&url).list_collectors().await.expect("the tokens read before stay in force");
}

#[test]
fn a_non_loopback_listen_without_tls_and_authentication_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server").display().to_string();
    let mut open = Proc::start("roster-server", &["--listen", "0.0.0.0:0", "--data-dir", &data]);
    assert!(!open.wait_exit().success());
    assert!(
        open.stderr().contains("refusing to serve on 0.0.0.0:0 without TLS and authentication: anyone who reaches"),
        "{}",
        open.stderr()
    );
    assert!(open.stderr().contains("--insecure"), "and says what to do: {}", open.stderr());

    let tokens = ServerTokens::new(dir.path());
    let path = tokens.path.display().to_string();
    let mut plaintext =
        Proc::start("roster-server", &["--listen", "0.0.0.0:0", "--data-dir", &data, "--auth-tokens", &path]);
    assert!(!plaintext.wait_exit().success());
    assert!(plaintext.stderr().contains("without TLS (tokens would cross the network"), "{}", plaintext.stderr());

    let insecure = Proc::start("roster-server", &["--listen", "0.0.0.0:0", "--data-dir", &data, "--insecure"]);
    let listen = insecure.logged("roster-server serving", "listen=");
    assert!(listen.starts_with("0.0.0.0:"), "{listen}");
    assert!(insecure.stderr().contains("serving another network without TLS and authentication"), "and warns");
}

/// Mutual TLS: a client certificate's `roster://` URI SAN is the credential. A collector whose certificate names
/// another id is refused its Watch (and makes no collector), its own certificate is accepted; an expired client
/// certificate is refused at the handshake; grpcurl over TLS sends a bearer token with `-H` instead of a
/// certificate. No refusal changes the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_the_certificate_names_the_caller_and_an_expired_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSetup::new(dir.path(), "roster://operator/test");
    let tokens = ServerTokens::new(&dir.path().join("tokens"));
    let reader = tokens.grant("reader", None);
    let mut flags = common::tls_flags(&tls, false);
    flags.extend(["--auth-tokens".to_owned(), tokens.path.display().to_string()]);
    let (_server, addr) = common::start_server_with(&dir.path().join("server"), None, &strs(&flags));
    let url = format!("https://{addr}");
    let operator = RosterClient::connect_tls(
        &ServerUrl::parse(&url).unwrap(),
        Duration::from_secs(10),
        Some(tls.client_files(true).load().unwrap()),
    );
    operator.register_producer(registration(FOREIGN, "")).await.expect("the operator's certificate");
    let before = registry_state(&operator).await;

    // A collector presenting another collector's certificate.
    let data = dir.path().join("collector");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("collector-id"), COLLECTOR_A).unwrap();
    let identity = |serial, uri: &str, name| {
        let files = tls.ca.issue(Usage::Client, serial, uri).write(dir.path(), name);
        vec![
            "--tls-ca".to_owned(),
            tls.ca_file.display().to_string(),
            "--tls-cert".to_owned(),
            files.cert.display().to_string(),
            "--tls-key".to_owned(),
            files.key.display().to_string(),
        ]
    };
    let other = identity(101, &format!("roster://collector/{COLLECTOR_B}"), "other");
    let (refused, _, _) = start_collector_with(&url, &data, &strs(&other));
    let message = format!("collector {COLLECTOR_B} may not call /roster.v1.AssignmentFeed/Watch");
    wait_for("the collector's feed refused", || refused.stderr().contains(&message)).await;
    assert_eq!(registry_state(&operator).await, before, "a refused Watch makes no collector live");
    drop(refused);
    let own = identity(102, &format!("roster://collector/{COLLECTOR_A}"), "own");
    let (_collector, _, _) = start_collector_with(&url, &data, &strs(&own));
    // Live and converged: its report of the generation it applied must be in before the registry is compared.
    wait_until(
        "the collector live with its own certificate, its generation reported",
        || async { operator.list_collectors().await.map(|l| l.collectors) },
        |listed| {
            listed.as_ref().is_ok_and(|c| c.iter().any(|c| c.id == COLLECTOR_A && c.open_streams > 0 && c.converged))
        },
    )
    .await
    .expect("the collectors");
    let before = registry_state(&operator).await;

    // An expired client certificate: the TLS layer refuses the handshake, so no call is made; the same identity in
    // a certificate that has not expired is accepted.
    let ca = tls.ca_file.display().to_string();
    let deregister = format!(r#"{{"producer_id":"{FOREIGN}"}}"#);
    let valid_years = [Some((2000, 2001)), None];
    for (serial, years) in (103..).zip(valid_years) {
        let files = tls.ca.issue_valid(Usage::Client, serial, "roster://operator/old", years).write(dir.path(), "old");
        let (cert, key) = (files.cert.display().to_string(), files.key.display().to_string());
        let listed = grpcurl_output(&["-cacert", &ca, "-cert", &cert, "-key", &key], &addr, &["list"]);
        assert_eq!(listed.status.success(), years.is_none(), "expired: {}; {listed:?}", years.is_some());
        if years.is_some() {
            let call = ["-cacert", &ca, "-cert", &cert, "-key", &key, "-d", &deregister];
            let output = grpcurl_output(&call, &addr, &["roster.v1.Registry/DeregisterProducer"]);
            assert!(!output.status.success(), "an expired certificate is refused: {output:?}");
        }
    }

    // grpcurl over TLS with -cacert and a bearer token (-H reaches reflection too).
    let header = reader.header();
    let listed = grpcurl_output(&["-cacert", &ca, "-H", &header], &addr, &["roster.v1.Registry/ListProducers"]);
    assert!(listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains(FOREIGN), "{listed:?}");
    let denied = grpcurl_output(
        &["-cacert", &ca, "-H", &header, "-d", &deregister],
        &addr,
        &["roster.v1.Registry/DeregisterProducer"],
    );
    assert!(String::from_utf8_lossy(&denied.stderr).contains("PermissionDenied"), "{denied:?}");
    assert_eq!(registry_state(&operator).await, before, "no refusal changed the registry");
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}
