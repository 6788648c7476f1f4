//! The scraper of producers that serve `roster.v1.Producer`: one `Collect` call per scrape.
//!
//! The channel (a connection and its request buffer, about 10 KB before it connects) is made at the first scrape,
//! not when the scraper is: a snapshot of 20 000 producers does not allocate 20 000 idle channels at once. Once
//! made, it is kept, so every later scrape reuses its connection.
//!
//! A failed collection writes nothing, and no series is tracked between collections: `up` and staleness markers
//! are the Prometheus kind's ([`super::prometheus`]). The producer's registered labels win over a sample's own of
//! the same name, without an `exported_` copy. Two samples of one series at one time (the registered labels
//! replaced the label that told them apart, or the producer sent one twice) keep the first: a receiver refuses a
//! request holding both, with every other series in it.

use std::{collections::HashSet, sync::Arc, time::Duration};

use roster::{
    domain::{CollectorId, Labels, Target},
    endpoint::ServerUrl,
    pb::{self, producer_client::ProducerClient},
    transport::{ClientOptions, ClientTls},
};
use tonic::transport::{Channel, Endpoint};
use tracing::warn;

use super::{
    ScrapeError, Scraper,
    prometheus::staleness::{Tracker, series_hash},
};
use crate::{defaults, sample::Sample};

/// Scrapes one `roster.v1.Producer`.
#[derive(Debug)]
pub(crate) struct GrpcScraper {
    endpoint: Endpoint,
    client: Option<ProducerClient<Channel>>,
    request: pb::CollectRequest,
    producer_id: Arc<str>,
    labels: Labels,
}

impl GrpcScraper {
    /// A scraper of `target` for `collector`, connecting within `connect_timeout`, over TLS with `tls` when given.
    ///
    /// # Errors
    /// [`ScrapeError::BadAddress`] when the target's address is not a URI tonic can dial.
    pub(crate) fn new(
        target: &Target,
        collector: CollectorId,
        connect_timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ScrapeError> {
        let uri = match tls {
            Some(_) => format!("https://{}", target.address),
            None => target.address.to_uri(),
        };
        let url = ServerUrl::parse(&uri).map_err(|e| ScrapeError::BadAddress(e.into()))?;
        let endpoint = ClientOptions { connect_timeout, keepalive: None, tls: tls.cloned() }.endpoint(&url);
        Ok(Self {
            endpoint,
            client: None,
            request: pb::CollectRequest { collector_id: collector.to_string() },
            producer_id: target.id.to_string().into(),
            labels: target.labels.clone(),
        })
    }
}

impl Scraper for GrpcScraper {
    type Scraped = Vec<Sample>;

    async fn scrape(&mut self, at_ms: u64) -> Result<Vec<Sample>, ScrapeError> {
        let client = self.client.get_or_insert_with(|| {
            ProducerClient::new(self.endpoint.connect_lazy())
                .max_decoding_message_size(defaults::MAX_PRODUCER_RESPONSE_BYTES)
        });
        let response = client.collect(self.request.clone()).await.map_err(ScrapeError::Failed)?;
        let mut samples: Vec<Sample> = response
            .into_inner()
            .samples
            .into_iter()
            .map(|s| {
                // The producer's registered labels win over the sample's own (of a name given twice, the last).
                let registered = self.labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
                let labels = s.labels.into_iter().chain(registered).collect();
                Sample {
                    time_ms: if s.timestamp_unix_ms == 0 { at_ms } else { s.timestamp_unix_ms },
                    producer_id: self.producer_id.clone(),
                    name: s.name.into(),
                    labels,
                    value: s.value,
                }
            })
            .collect();
        let mut seen = HashSet::with_capacity_and_hasher(samples.len(), foldhash::fast::RandomState::default());
        let (before, mut key) = (samples.len(), Vec::new());
        samples.retain(|s| seen.insert((series_hash(&mut key, &s.name, s.labels.iter()), s.time_ms)));
        if samples.len() < before {
            warn!(
                producer.id = %self.producer_id,
                duplicates = before - samples.len(),
                "samples dropped: a second sample of one series at one time (the producer's registered labels \
                 replace its samples' own of the same name); the first is kept"
            );
        }
        Ok(samples)
    }

    fn conclude(&mut self, _at_ms: u64, _took: Duration, outcome: Result<Vec<Sample>, &ScrapeError>) -> Vec<Sample> {
        outcome.unwrap_or_default()
    }

    fn has_series_to_end(&self) -> bool {
        false
    }

    fn retire(&mut self, _at_ms: u64) -> Vec<Sample> {
        Vec::new()
    }

    fn hand_over(self) -> Option<Tracker> {
        None
    }
}

#[cfg(test)]
mod tests {
    use roster::{
        domain::{Collection, CollectorId, Labels as DomainLabels, ProducerAddress, ProducerId},
        producer::SampleService,
    };
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;

    /// A producer whose samples `m{zone="a"}` and `m{zone="b"}` become one series under its registered
    /// `zone="z"`, and which sends `n` twice: the first of each is written, once.
    #[tokio::test]
    async fn two_samples_of_one_series_at_one_time_keep_the_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = SampleService::new(|_: &pb::CollectRequest| {
            let sample = |name: &str, zone: &str, value: f64| pb::Sample {
                name: name.into(),
                labels: [("zone".to_owned(), zone.to_owned())].into(),
                value,
                ..Default::default()
            };
            vec![sample("m", "a", 1.0), sample("m", "b", 2.0), sample("n", "a", 3.0), sample("n", "a", 4.0)]
        });
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let target = Target {
            id: ProducerId::new_random(),
            address: ProducerAddress::parse_field("address", &addr.to_string()).unwrap(),
            interval: Duration::from_secs(1),
            labels: DomainLabels::parse_field("labels", [("zone".to_owned(), "z".to_owned())].into()).unwrap(),
            collection: Collection::Grpc,
        };
        let mut scraper = GrpcScraper::new(&target, CollectorId::new_random(), Duration::from_secs(5), None).unwrap();
        let samples = scraper.scrape(1_000).await.unwrap();
        let written: Vec<(&str, f64)> = samples.iter().map(|s| (&*s.name, s.value)).collect();
        assert_eq!(written, [("m", 1.0), ("n", 3.0)]);
        assert!(samples.iter().all(|s| s.labels.iter().eq([("zone", "z")])));
        server.abort();
    }
}
