//! The typed clients: of the control plane (every unary call of `roster.v1.Registry` and `roster.v1.AssignmentFeed`)
//! and of a collector's status API (`roster.v1.CollectorStatus`). Every call goes through [`retry::call`], so each
//! one retries transient failures within R3's bounds, carries a request id, and fails with an error naming the
//! call, the attempts, the time spent and the last cause. Listings that come in pages are followed to the end here,
//! once, for every caller.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::{
    backoff::BackoffPolicy,
    pb::{
        self, assignment_feed_client::AssignmentFeedClient, collector_status_client::CollectorStatusClient,
        registry_client::RegistryClient,
    },
    retry::{self, CallError},
};

/// A client of one roster-server.
#[derive(Debug, Clone)]
pub struct RosterClient {
    registry: RegistryClient<Channel>,
    feed: AssignmentFeedClient<Channel>,
    policy: BackoffPolicy,
    timeout: Duration,
}

/// Why a client cannot be made.
#[derive(Debug, thiserror::Error)]
#[error("server {0:?} is not a URL like http://127.0.0.1:50051")]
pub struct BadUrl(pub String);

impl RosterClient {
    /// A client of `server` (connecting lazily, so a server that is down is retried per call), with the R3
    /// defaults: 5 attempts, each limited to `timeout`.
    ///
    /// # Errors
    /// When `server` is not a URL.
    pub fn new(server: &str, timeout: Duration) -> Result<Self, BadUrl> {
        let channel = Endpoint::from_shared(server.to_owned())
            .map_err(|_| BadUrl(server.to_owned()))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            registry: RegistryClient::new(channel.clone()),
            feed: AssignmentFeedClient::new(channel),
            policy: BackoffPolicy::UNARY,
            timeout,
        })
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
        let client = self.registry.clone();
        retry::call("RegisterProducer", self.policy, self.timeout, request, |r| {
            let mut c = client.clone();
            async move { c.register_producer(r).await }
        })
        .await
    }

    /// `DeregisterProducer`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn deregister_producer(&self, producer_id: String) -> Result<pb::DeregisterProducerResponse, CallError> {
        let client = self.registry.clone();
        retry::call(
            "DeregisterProducer",
            self.policy,
            self.timeout,
            pb::DeregisterProducerRequest { producer_id },
            |r| {
                let mut c = client.clone();
                async move { c.deregister_producer(r).await }
            },
        )
        .await
    }

    /// `GetProducer`.
    ///
    /// # Errors
    /// See [`CallError`]; an unknown id is [`CallError::Rejected`] with `NOT_FOUND`.
    pub async fn get_producer(&self, producer_id: String) -> Result<pb::ProducerInfo, CallError> {
        let client = self.registry.clone();
        retry::call("GetProducer", self.policy, self.timeout, pb::GetProducerRequest { producer_id }, |r| {
            let mut c = client.clone();
            async move { c.get_producer(r).await }
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
        let client = self.registry.clone();
        retry::call("ListProducers", self.policy, self.timeout, request, |r| {
            let mut c = client.clone();
            async move { c.list_producers(r).await }
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
        let client = self.registry.clone();
        retry::call("ListCollectors", self.policy, self.timeout, pb::ListCollectorsRequest {}, |r| {
            let mut c = client.clone();
            async move { c.list_collectors(r).await }
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
        let client = self.feed.clone();
        retry::call("ReportApplied", self.policy, self.timeout, request, |r| {
            let mut c = client.clone();
            async move { c.report_applied(r).await }
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
    /// A client of the status API at `address` (`host:port`, or a URL), connecting lazily, with the R3 defaults:
    /// 5 attempts, each limited to `timeout`.
    ///
    /// # Errors
    /// When `address` is neither.
    pub fn new(address: &str, timeout: Duration) -> Result<Self, BadUrl> {
        let url = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
        let channel = Endpoint::from_shared(url)
            .map_err(|_| BadUrl(address.to_owned()))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self { status: CollectorStatusClient::new(channel), policy: BackoffPolicy::UNARY, timeout })
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
