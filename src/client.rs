//! The typed clients: of the control plane (every unary call of `roster.v1.Registry` and `roster.v1.AssignmentFeed`)
//! and of a collector's status API (`roster.v1.CollectorStatus`). Every call goes through [`retry::call`], so each
//! one retries transient failures within R3's bounds, carries a request id, and fails with an error naming the
//! call, the attempts, the time spent and the last cause. Listings that come in pages are followed to the end here,
//! once, for every caller. Every call to the control plane carries the client's [`CallCredentials`] (none unless
//! [`RosterClient::with_credentials`] gives some).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tonic::{Status, transport::Channel};

use crate::{
    auth::{AuthChannel, CallCredentials},
    backoff::BackoffPolicy,
    domain::FieldError,
    endpoint::ServerUrl,
    pb::{
        self, assignment_feed_client::AssignmentFeedClient, collector_status_client::CollectorStatusClient,
        registry_client::RegistryClient,
    },
    retry::{self, CallError},
    transport::{ClientOptions, ClientTls},
};

/// The channel of a client of unary calls: connecting lazily, each connection attempt limited to a call's
/// `timeout`, `https://` URLs dialled with `tls`.
fn unary_channel(url: &ServerUrl, timeout: Duration, tls: Option<ClientTls>) -> Channel {
    ClientOptions { connect_timeout: timeout, keepalive: None, tls }.connect_lazy(url)
}

/// A client of a roster control plane: one roster-server, or several replicas of one sharing a store (any replica
/// takes any call). Calls go to one replica until an attempt on it fails transiently (it is down, or cannot reach
/// its store), and from then on to the next, in turn: so a retry of the same call is the next replica's, and the
/// calls after it stay there while it answers. Clones share the replica in use.
#[derive(Debug, Clone)]
pub struct RosterClient {
    replicas: Vec<Replica>,
    /// Index into `replicas` of the one calls go to now.
    current: Arc<AtomicUsize>,
    policy: BackoffPolicy,
    timeout: Duration,
}

/// One roster-server a [`RosterClient`] calls: its connection and the stubs on it.
#[derive(Debug, Clone)]
struct Replica {
    channel: Channel,
    registry: RegistryClient<AuthChannel>,
    feed: AssignmentFeedClient<AuthChannel>,
}

impl Replica {
    fn new(channel: Channel, credentials: &CallCredentials) -> Self {
        Self {
            registry: RegistryClient::with_interceptor(channel.clone(), credentials.clone()),
            feed: AssignmentFeedClient::with_interceptor(channel.clone(), credentials.clone()),
            channel,
        }
    }
}

/// The replica an attempt went to. Unless the attempt ends with an answer that does not ask for a retry
/// ([`Turn::end`]), that is, when it fails transiently or times out (dropped unfinished), the client moves on to the
/// next replica, unless another attempt already did.
struct Turn {
    current: Arc<AtomicUsize>,
    at: usize,
    of: usize,
    served: bool,
}

impl Turn {
    fn end<T>(mut self, result: Result<T, Status>) -> Result<T, Status> {
        self.served = !matches!(&result, Err(status) if retry::is_transient(status));
        result
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.served && self.of > 1 {
            let _ =
                self.current.compare_exchange(self.at, (self.at + 1) % self.of, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

impl RosterClient {
    /// A client of `server`, given as text: parsed by [`ServerUrl`] (the one parser of server URLs), then as
    /// [`RosterClient::connect`].
    ///
    /// # Errors
    /// A [`FieldError`] on the field `server` when it is not `http://host:port`; nothing is dialled then.
    pub fn new(server: &str, timeout: Duration) -> Result<Self, FieldError> {
        Ok(Self::connect(&ServerUrl::parse_field("server", server)?, timeout))
    }

    /// A client of `server` (connecting lazily, so a server that is down is retried per call), with the R3
    /// defaults: 5 attempts, each limited to `timeout`.
    pub fn connect(server: &ServerUrl, timeout: Duration) -> Self {
        Self::connect_tls(server, timeout, None)
    }

    /// As [`RosterClient::connect`], dialling an `https://` server with `tls`.
    pub fn connect_tls(server: &ServerUrl, timeout: Duration, tls: Option<ClientTls>) -> Self {
        Self::on_channel(unary_channel(server, timeout, tls), timeout)
    }

    /// A client of the replicas at `servers`, tried in turn (see [`RosterClient`]), each dialled as
    /// [`RosterClient::connect_tls`] dials one.
    ///
    /// # Errors
    /// A [`FieldError`] on the field `server` when `servers` is empty.
    pub fn connect_any(servers: &[ServerUrl], timeout: Duration, tls: Option<ClientTls>) -> Result<Self, FieldError> {
        if servers.is_empty() {
            return Err(FieldError::new("server", "no roster-server URL given; give one, or several replicas' URLs"));
        }
        let channels = servers.iter().map(|server| unary_channel(server, timeout, tls.clone()));
        Ok(Self::on_channels(channels, timeout))
    }

    /// A client on `channel`, a connection to a roster-server made elsewhere (the follower reports on its feed's
    /// connection), with the R3 defaults: 5 attempts, each limited to `timeout`.
    pub fn on_channel(channel: Channel, timeout: Duration) -> Self {
        Self::on_channels([channel], timeout)
    }

    fn on_channels(channels: impl IntoIterator<Item = Channel>, timeout: Duration) -> Self {
        let credentials = CallCredentials::none();
        Self {
            replicas: channels.into_iter().map(|channel| Replica::new(channel, &credentials)).collect(),
            current: Arc::new(AtomicUsize::new(0)),
            policy: BackoffPolicy::UNARY,
            timeout,
        }
    }

    /// Sends `credentials` with every call (a bearer token, `roster::auth`).
    pub fn with_credentials(mut self, credentials: CallCredentials) -> Self {
        for replica in &mut self.replicas {
            *replica = Replica::new(replica.channel.clone(), &credentials);
        }
        self
    }

    /// The replica calls go to now, and its [`Turn`].
    fn replica(&self) -> (&Replica, Turn) {
        let of = self.replicas.len();
        let at = self.current.load(Ordering::Relaxed) % of;
        (&self.replicas[at], Turn { current: self.current.clone(), at, of, served: false })
    }

    /// Sets the most attempts per call (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.policy.max_attempts = Some(attempts.max(1));
        self
    }

    /// `RegisterProducer`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn register_producer(
        &self,
        request: pb::RegisterProducerRequest,
    ) -> Result<pb::RegisterProducerResponse, CallError> {
        retry::call("RegisterProducer", self.policy, self.timeout, request, |r| {
            let (replica, turn) = self.replica();
            let mut c = replica.registry.clone();
            async move { turn.end(c.register_producer(r).await) }
        })
        .await
    }

    /// `DeregisterProducer`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn deregister_producer(&self, producer_id: String) -> Result<pb::DeregisterProducerResponse, CallError> {
        retry::call(
            "DeregisterProducer",
            self.policy,
            self.timeout,
            pb::DeregisterProducerRequest { producer_id },
            |r| {
                let (replica, turn) = self.replica();
                let mut c = replica.registry.clone();
                async move { turn.end(c.deregister_producer(r).await) }
            },
        )
        .await
    }

    /// `GetProducer`.
    ///
    /// # Errors
    /// See [`CallError`]; an unknown id is [`CallError::Rejected`] with `NOT_FOUND`.
    pub async fn get_producer(&self, producer_id: String) -> Result<pb::ProducerInfo, CallError> {
        retry::call("GetProducer", self.policy, self.timeout, pb::GetProducerRequest { producer_id }, |r| {
            let (replica, turn) = self.replica();
            let mut c = replica.registry.clone();
            async move { turn.end(c.get_producer(r).await) }
        })
        .await
    }

    /// `SetProducerPin`: pins `producer_id` to `collector_id`, or clears its operator pin when `collector_id` is
    /// empty.
    ///
    /// # Errors
    /// See [`CallError`]; an unregistered producer is [`CallError::Rejected`] with `NOT_FOUND`.
    pub async fn set_producer_pin(
        &self,
        producer_id: String,
        collector_id: String,
    ) -> Result<pb::SetProducerPinResponse, CallError> {
        let request = pb::SetProducerPinRequest { producer_id, collector_id };
        retry::call("SetProducerPin", self.policy, self.timeout, request, |r| {
            let (replica, turn) = self.replica();
            let mut c = replica.registry.clone();
            async move { turn.end(c.set_producer_pin(r).await) }
        })
        .await
    }

    /// One page of `ListProducers`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn list_producers(
        &self,
        request: pb::ListProducersRequest,
    ) -> Result<pb::ListProducersResponse, CallError> {
        retry::call("ListProducers", self.policy, self.timeout, request, |r| {
            let (replica, turn) = self.replica();
            let mut c = replica.registry.clone();
            async move { turn.end(c.list_producers(r).await) }
        })
        .await
    }

    /// Every page of `ListProducers` for `collector_id` (empty for all), following `next_page_token` to the
    /// end (a short page is not the end; only an empty token is).
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn list_all_producers(&self, collector_id: String) -> Result<Vec<pb::ProducerInfo>, CallError> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_producers(pb::ListProducersRequest {
                    page_size: Some(1000),
                    page_token,
                    collector_id: collector_id.clone(),
                })
                .await?;
            all.extend(page.producers);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// `ListCollectors`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn list_collectors(&self) -> Result<pb::ListCollectorsResponse, CallError> {
        retry::call("ListCollectors", self.policy, self.timeout, pb::ListCollectorsRequest {}, |r| {
            let (replica, turn) = self.replica();
            let mut c = replica.registry.clone();
            async move { turn.end(c.list_collectors(r).await) }
        })
        .await
    }

    /// `ForgetCollector`: forgets a departed collector.
    ///
    /// # Errors
    /// See [`CallError`]; a collector that is live or in grace is [`CallError::Rejected`] with
    /// `FAILED_PRECONDITION`.
    pub async fn forget_collector(&self, collector_id: String) -> Result<pb::ForgetCollectorResponse, CallError> {
        let request = pb::ForgetCollectorRequest { collector_id };
        retry::call("ForgetCollector", self.policy, self.timeout, request, |r| {
            let (replica, turn) = self.replica();
            let mut c = replica.registry.clone();
            async move { turn.end(c.forget_collector(r).await) }
        })
        .await
    }

    /// `ReportApplied`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn report_applied(
        &self,
        request: pb::ReportAppliedRequest,
    ) -> Result<pb::ReportAppliedResponse, CallError> {
        retry::call("ReportApplied", self.policy, self.timeout, request, |r| {
            let (replica, turn) = self.replica();
            let mut c = replica.feed.clone();
            async move { turn.end(c.report_applied(r).await) }
        })
        .await
    }
}

/// A client of one roster-collector's status API.
#[derive(Debug, Clone)]
pub struct StatusClient {
    status: CollectorStatusClient<Channel>,
    policy: BackoffPolicy,
    timeout: Duration,
}

impl StatusClient {
    /// A client of the status API at `url` (a collector's `--listen`, parsed with
    /// [`ServerUrl::parse_address_or_url`]), connecting lazily, with the R3 defaults: 5 attempts, each limited to
    /// `timeout`.
    pub fn connect(url: &ServerUrl, timeout: Duration) -> Self {
        Self::connect_tls(url, timeout, None)
    }

    /// As [`StatusClient::connect`], dialling an `https://` collector with `tls`.
    pub fn connect_tls(url: &ServerUrl, timeout: Duration, tls: Option<ClientTls>) -> Self {
        let channel = unary_channel(url, timeout, tls);
        Self { status: CollectorStatusClient::new(channel), policy: BackoffPolicy::UNARY, timeout }
    }

    /// Sets the most attempts per call (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.policy.max_attempts = Some(attempts.max(1));
        self
    }

    /// One page of `GetStatus`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn get_status(&self, request: pb::GetStatusRequest) -> Result<pb::GetStatusResponse, CallError> {
        let client = self.status.clone();
        retry::call("GetStatus", self.policy, self.timeout, request, |r| {
            let mut c = client.clone();
            async move { c.get_status(r).await }
        })
        .await
    }

    /// The whole status: the summary of the first page, with the producers of every page, following
    /// `next_page_token` to the end (a short page is not the end; only an empty token is).
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn get_full_status(&self) -> Result<pb::GetStatusResponse, CallError> {
        let request = |page_token| pb::GetStatusRequest { page_size: Some(crate::domain::MAX_PAGE_SIZE), page_token };
        let mut status = self.get_status(request(String::new())).await?;
        let mut page_token = std::mem::take(&mut status.next_page_token);
        while !page_token.is_empty() {
            let page = self.get_status(request(page_token)).await?;
            status.producers.extend(page.producers);
            page_token = page.next_page_token;
        }
        Ok(status)
    }
}
