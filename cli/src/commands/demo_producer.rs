//! `roster demo-producer`: one demo producer in this process, serving synthetic metrics and keeping itself
//! registered with `--server` until Ctrl-C.

use anyhow::Context as _;
use roster::{
    domain::{ProducerId, labels_from_flags},
    producer::{DemoOptions, run_demo},
};

use super::Globals;
use crate::args::DemoProducerArgs;

#[allow(clippy::print_stdout, reason = "telling the user where the producer serves is the point")]
pub(super) async fn run(globals: &Globals, args: DemoProducerArgs) -> anyhow::Result<()> {
    let DemoProducerArgs { listen, id, interval, lease, label } = args;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let options = DemoOptions {
        servers: globals.server.clone(),
        credentials: globals.credentials.clone(),
        id: id.unwrap_or_else(ProducerId::new_random),
        interval,
        lease,
        labels: labels_from_flags("--label", label)?.to_map(),
        tls: globals.tls.clone(),
        serve_tls: None,
    };
    println!("demo producer {} serving on {}", options.id, listener.local_addr()?);
    run_demo(listener, options, roster::process::shutdown_signal_or_hangup()).await?;
    Ok(())
}
