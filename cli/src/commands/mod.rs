//! What each command does, one file per command; this module dispatches to them and holds what several share:
//! the global options ([`Globals`]), the check that a collector id is known, and the meaning of an `UNIMPLEMENTED`
//! answer from `--server`.

mod assignment;
mod auth;
mod collectors;
mod demo_producer;
mod local_ca;
mod producers;
mod status;
mod up;
mod watch;

use std::time::Duration;

use anyhow::Context as _;
use roster::{
    auth::CallCredentials,
    client::RosterClient,
    domain::CollectorId,
    endpoint::ServerUrl,
    pb,
    retry::CallError,
    transport::{ClientTls, ClientTlsFiles, IdentityFiles, tls::answered_in_plaintext},
};

use crate::{
    args::{Cli, Command, DEFAULT_SERVER},
    output::Format,
};

/// The global options every command is given: where the server is, how to call it, how to print.
struct Globals {
    /// `--server`: one URL, or the replicas'.
    server: Vec<ServerUrl>,
    /// The library's retrying client of `--server`.
    client: RosterClient,
    timeout: Duration,
    max_attempts: u32,
    format: Format,
    /// The token of `--token-file`, or none.
    credentials: CallCredentials,
    /// `--tls-ca`, `--tls-cert` and `--tls-key`, loaded and checked.
    tls: Option<ClientTls>,
}

impl Globals {
    /// The library's retrying client of `--server` (of its replicas in turn, when it names several), with
    /// `--timeout`, `--max-attempts` (R1–R5) and the token of `--token-file`.
    fn client(&self) -> RosterClient {
        self.client.clone()
    }
}

/// The client TLS files the flags name, loaded and checked; none without `--tls-ca`.
fn client_tls(cli: &Cli) -> anyhow::Result<Option<ClientTls>> {
    let Some(ca) = cli.tls_ca.clone() else { return Ok(None) };
    let identity = IdentityFiles::from_flags(cli.tls_cert.clone(), cli.tls_key.clone());
    let tls =
        ClientTlsFiles { ca, identity }.load().context("cannot use the TLS files (--tls-ca, --tls-cert, --tls-key)")?;
    Ok(Some(tls))
}

/// Runs the command `cli` names.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let credentials = match &cli.token_file {
        Some(path) => CallCredentials::from_token_file(path).context("--token-file")?,
        None => CallCredentials::none(),
    };
    let tls = client_tls(&cli)?;
    let client = RosterClient::connect_any(&cli.server, cli.timeout, tls.clone())
        .context("--server")?
        .with_max_attempts(cli.max_attempts)
        .with_credentials(credentials.clone());
    let globals = Globals {
        client,
        server: cli.server,
        timeout: cli.timeout,
        max_attempts: cli.max_attempts,
        format: cli.output,
        credentials,
        tls,
    };
    let result = match cli.command {
        Command::Producers(command) => producers::run(&globals, command).await,
        Command::Collectors(command) => collectors::run(&globals, command).await,
        Command::Assignment(command) => assignment::run(&globals, command).await,
        Command::Watch(args) => watch::run(&globals, args).await,
        Command::Status(args) => status::run(&globals, args).await,
        Command::DemoProducer(args) => demo_producer::run(&globals, args).await,
        Command::Up(args) => up::run(args).await,
        Command::Auth(command) => auth::run(&globals, command),
    };
    result.map_err(|e| not_a_server(e, &globals.server)).map_err(|e| tls_mismatch(e, &globals.server))
}

/// Adds to a failure what it means when an `https://` server answered in plaintext: the server does not serve
/// TLS. (The opposite, a plaintext client of a TLS server, is told so by the server itself.)
fn tls_mismatch(e: anyhow::Error, servers: &[ServerUrl]) -> anyhow::Error {
    let plaintext = e.chain().any(answered_in_plaintext)
        || e.downcast_ref::<CallError>().is_some_and(|call| answered_in_plaintext(call.status()));
    if servers.iter().any(ServerUrl::is_tls) && plaintext {
        let server = ServerUrl::joined(servers);
        return e.context(format!(
            "--server {server} answered in plaintext, not TLS: it serves without TLS, so call it with http:// and \
             without --tls-ca (or start it with --tls-cert and --tls-key)"
        ));
    }
    e
}

/// Adds to a call's failure what an `UNIMPLEMENTED` answer means here: something answered at `--server`, but not
/// a roster-server (whose every RPC the CLI calls exists).
fn not_a_server(e: anyhow::Error, servers: &[ServerUrl]) -> anyhow::Error {
    match e.downcast_ref::<CallError>() {
        Some(call) if call.status().code() == tonic::Code::Unimplemented => e.context(format!(
            "--server {} answered, but it is not a roster-server (it does not serve roster.v1.Registry; a \
             roster-collector's status address answers so); point --server at roster-server's --listen address, \
             e.g. {DEFAULT_SERVER}",
            ServerUrl::joined(servers)
        )),
        _ => e,
    }
}

/// The server's record of `collector`, or an error saying it is not known: the one check that an id names a
/// collector before anything is listed for it, so an unknown id is never shown as an empty assignment.
async fn known_collector(client: &RosterClient, collector: CollectorId) -> anyhow::Result<pb::CollectorInfo> {
    let id = collector.to_string();
    let collectors = client.list_collectors().await?.collectors;
    collectors.into_iter().find(|c| c.id == id).with_context(|| {
        format!(
            "--collector {id}: this collector is not known to the server (it has never opened its feed); \
             `roster collectors list` shows the known ones"
        )
    })
}
