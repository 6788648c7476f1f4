//! Bounded waiting for tests: poll a condition until it holds, and fail the test, naming what was awaited, when it
//! does not within [`WAIT`].
//!
//! A test waits on the state it needs (a status, a count, a log line), never for a fixed time: one waits only as
//! long as needed on a fast machine and passes on a slow one. Three shapes, one loop:
//! - [`wait_for`]: a condition checked without awaiting (a file, a counter, a process's log);
//! - [`wait_for_some`]: an async check that yields the value the test goes on with (a call's answer);
//! - [`wait_until`]: an async observation and a condition on it; on failure the last observation is printed.

use std::{fmt::Debug, future::Future, time::Duration};

/// Every wait in roster's tests is bounded by this: far beyond what any condition needs on a loaded CI machine,
/// short enough that a hung test fails rather than stalls the suite.
pub const WAIT: Duration = Duration::from_secs(60);

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Checks `condition` every 20 ms until it holds; fails the test after [`WAIT`] naming `what`.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    wait_until(what, || std::future::ready(condition()), |held| *held).await;
}

/// Runs `check` every 20 ms until it returns `Some`, and returns that value; fails the test after [`WAIT`] naming
/// `what`.
pub async fn wait_for_some<T: Debug, Fut>(what: &str, check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    wait_until(what, check, Option::is_some).await.expect("wait_until returns only an observation that is done")
}

/// Observes with `observe` every 20 ms until `done` holds for the observation, and returns it; fails the test after
/// [`WAIT`] naming `what` and showing the last observation.
pub async fn wait_until<S: Debug, Fut>(what: &str, mut observe: impl FnMut() -> Fut, done: impl Fn(&S) -> bool) -> S
where
    Fut: Future<Output = S>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = observe().await;
        if done(&seen) {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last seen: {seen:#?}");
        tokio::time::sleep(POLL).await;
    }
}
