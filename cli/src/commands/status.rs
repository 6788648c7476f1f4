//! `roster status`: a collector's status, read over its roster.v1.CollectorStatus API; an address that answers but
//! is not that API is named for what it is.

use std::time::Duration;

use roster::{client::StatusClient, endpoint::ServerUrl, retry::CallError, transport::ClientOptions};
use tonic::transport::Channel;

use super::Globals;
use crate::{
    args::{DEFAULT_COLLECTOR_LISTEN, StatusArgs},
    output,
};

pub(super) async fn run(globals: &Globals, args: StatusArgs) -> anyhow::Result<()> {
    let StatusArgs { collector } = args;
    let status = match StatusClient::connect_tls(&collector, globals.timeout, globals.tls.clone())
        .with_max_attempts(globals.max_attempts)
        .get_full_status()
        .await
    {
        Ok(status) => status,
        Err(e) => {
            let channel = ClientOptions { connect_timeout: globals.timeout, keepalive: None, tls: globals.tls.clone() }
                .connect_lazy(&collector);
            return Err(status_failure(e, collector, channel, globals.timeout).await);
        }
    };
    output::print(globals.format, &output::status_json(&status), || output::status_text(&status));
    Ok(())
}

/// `--collector` answered gRPC, but not as a roster-collector's status API.
///
/// Its own type, not a [`CallError`] with context: the CLI reads a `CallError` saying `UNIMPLEMENTED` as a
/// `--server` problem, and this one is about `--collector`.
#[derive(Debug, thiserror::Error)]
#[error(
    "--collector {collector} answered, but it is not a roster-collector's status API: {what}. Point --collector at \
     the collector's --listen address ({DEFAULT_COLLECTOR_LISTEN} by default; `roster up` prints it)"
)]
struct NotACollector {
    collector: ServerUrl,
    /// What answered instead, as far as its health service tells.
    what: &'static str,
    #[source]
    call: CallError,
}

/// The CLI's error for a failed `GetStatus`. `UNIMPLEMENTED` means an address that answers gRPC but is not a
/// roster-collector's status API: the health service of what answered says whether it is a roster-server.
async fn status_failure(e: CallError, collector: ServerUrl, channel: Channel, timeout: Duration) -> anyhow::Error {
    if e.status().code() != tonic::Code::Unimplemented {
        return e.into();
    }
    let check = tonic_health::pb::HealthCheckRequest { service: "roster.v1.Registry".into() };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let is_server = matches!(tokio::time::timeout(timeout, health.check(check)).await, Ok(Ok(_)));
    let what = if is_server {
        "it is a roster-server (it serves roster.v1.Registry)"
    } else {
        "it does not serve roster.v1.CollectorStatus"
    };
    NotACollector { collector, what, call: e }.into()
}
