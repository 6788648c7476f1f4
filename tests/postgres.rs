//! roster-server on PostgreSQL (`--store postgres://…`, issue 18), as a real process on loopback against a real
//! PostgreSQL of the test's own ([`TestPostgres`]): what the SQLite store promises across `kill -9`, it keeps on
//! PostgreSQL too.
//!
//! The binaries are the workspace's own, found next to this test's executable (`cargo test --workspace` and
//! `./scripts/test` build them); if one is missing the test fails and says how to build it. PostgreSQL's tools
//! come from `ROSTER_PG_BIN` or `PATH` (`./scripts/test` provides them); the test fails, naming them, without.

// Test helpers: a panic here is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{RegistrationBurst, all_producers, start_server_on_store, wait_for};
use roster_testkit::TestPostgres;

/// A burst of registrations from 16 clients, the server killed with SIGKILL in the middle of it: after a restart on
/// the same database, every registration that was acknowledged is there, in the same epoch; and the log names the
/// store without its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_server_on_postgres_loses_no_acknowledged_registration_and_keeps_its_epoch() {
    let pg = TestPostgres::start().await;
    let store = pg.url().replace("postgres://roster@", "postgres://roster:unused-password@");
    let (mut server, listen) = start_server_on_store(&store, "127.0.0.1:0", &[]);
    let url = format!("http://{listen}");
    let epoch = server.logged("roster-server serving", "epoch=");
    let logged_store = server.logged("roster-server serving", "store=");
    assert_eq!(logged_store, pg.url(), "the store is logged without its password");

    let burst = RegistrationBurst::start(&url, 16).await;
    wait_for("1 000 acknowledged registrations", || burst.acknowledged() >= 1_000).await;
    server.kill9();
    let acknowledged = burst.end().await;

    let (server, _) = start_server_on_store(&store, &listen, &[]);
    assert_eq!(server.logged("roster-server serving", "epoch="), epoch, "same epoch after the restart");
    let stored = all_producers(&url).await;
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains_key(*id)).collect();
    eprintln!(
        "figure: kill -9 mid-burst on PostgreSQL: {} acknowledged, {} stored, {} lost",
        acknowledged.len(),
        stored.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{} acknowledged registrations lost, e.g. {:?}", lost.len(), lost.first());
}
