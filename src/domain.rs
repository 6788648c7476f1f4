//! Domain types of the control plane, and the one place where client-supplied wire fields become them.
//!
//! Every conversion from a `pb` request is a `TryFrom` that either yields a fully valid value or a
//! [`FieldError`] naming the offending field, what is wrong with it and what is accepted. Nothing past the edge
//! re-validates or unwraps a client field.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use uuid::Uuid;

use crate::pb;

/// Shortest accepted collection interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted collection interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Shortest accepted producer lease.
pub const MIN_LEASE: Duration = Duration::from_secs(10);
/// Longest accepted producer lease.
pub const MAX_LEASE: Duration = Duration::from_secs(86_400);
/// Most labels one producer may carry.
pub const MAX_LABELS: usize = 32;
/// Longest label name, in bytes.
pub const MAX_LABEL_NAME_BYTES: usize = 64;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Longest producer address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 255;
/// Longest rejection reason kept from a `ReportApplied`, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Default page size of list calls.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size of list calls.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A client-supplied field that is not acceptable: which one, and why.
///
/// Displayed as `field: problem`, which is also the message of the `INVALID_ARGUMENT` status sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field's name as in the proto (`producer_id`, `labels["job"]`, …).
    pub field: String,
    /// What is wrong and what would be accepted.
    pub problem: String,
}

impl FieldError {
    /// Makes an error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { field: field.into(), problem: problem.into() }
    }
}

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Makes a new random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses a required id field.
            ///
            /// # Errors
            /// A [`FieldError`] naming `field` when the value is empty or not a UUID.
            pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldError> {
                parse_uuid(field, value).map(Self)
            }

            /// Parses an optional id field: empty means `None`.
            ///
            /// # Errors
            /// A [`FieldError`] naming `field` when the value is neither empty nor a UUID.
            pub fn parse_optional_field(field: &str, value: &str) -> Result<Option<Self>, FieldError> {
                if value.is_empty() { Ok(None) } else { Self::parse_field(field, value).map(Some) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A producer's id: a UUID chosen by its registrant.
    ProducerId
);
uuid_id!(
    /// A collector's id: a UUID made on its first start and kept in its data directory.
    CollectorId
);

/// Parses a required UUID field.
///
/// # Errors
/// A [`FieldError`] naming `field` when the value is empty or not a UUID.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(
            field,
            "required, but empty (expected a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8)",
        ));
    }
    Uuid::parse_str(value).map_err(|e| {
        FieldError::new(
            field,
            format!("{:?} is not a UUID ({e}); expected e.g. 67e55044-10b1-426f-9247-bb680e5fe0c8", clip(value)),
        )
    })
}

/// A producer's address, normalised to `host:port` (no scheme, no path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerAddress(String);

/// Whether `value` is `host:port` with a lowercase DNS name or IPv4 host and a non-zero port: a form that
/// [`ProducerAddress::parse_field`] accepts and leaves as it is.
fn is_normal_host_port(value: &str) -> bool {
    let Some((host, port)) = value.rsplit_once(':') else { return false };
    !host.is_empty()
        && value.len() <= MAX_ADDRESS_BYTES
        && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

impl ProducerAddress {
    /// Parses and normalises an address field: `host:port`, optionally with an `http://` prefix.
    ///
    /// # Errors
    /// A [`FieldError`] naming `field` when the value is empty, too long, has a path or another scheme, or lacks
    /// a host or a non-zero port.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldError> {
        const EXPECTED: &str = "expected host:port, e.g. 127.0.0.1:9100, metrics.example:9100 or [::1]:9100";
        if value.is_empty() {
            return Err(FieldError::new(field, format!("required, but empty ({EXPECTED})")));
        }
        if value.len() > MAX_ADDRESS_BYTES {
            return Err(FieldError::new(
                field,
                format!("{} bytes long, at most {MAX_ADDRESS_BYTES} allowed", value.len()),
            ));
        }
        let bare = value.strip_prefix("http://").unwrap_or(value);
        let bare = bare.strip_suffix('/').unwrap_or(bare);
        let bad = |why: &str| FieldError::new(field, format!("{:?} {why} ({EXPECTED})", clip(value)));
        if bare.contains("://") {
            return Err(bad("has a scheme other than http://"));
        }
        if bare.contains(['/', '?', '#', '@']) {
            return Err(bad("is not a bare host:port"));
        }
        let authority: http::uri::Authority = bare.parse().map_err(|_| bad("is not a valid host:port"))?;
        match authority.port_u16() {
            None => return Err(bad("has no port")),
            Some(0) => return Err(bad("has port 0")),
            Some(_) => {}
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Self(authority.as_str().to_ascii_lowercase()))
    }

    /// As [`ProducerAddress::parse_field`], keeping `value` itself when it is already in normal form (a
    /// lowercase DNS name or IPv4 address and a port, as the server sends them): no parse, no copy.
    ///
    /// # Errors
    /// As [`ProducerAddress::parse_field`].
    pub fn parse_owned(field: &str, value: String) -> Result<Self, FieldError> {
        if is_normal_host_port(&value) {
            return Ok(Self(value));
        }
        Self::parse_field(field, &value)
    }

    /// The normalised `host:port`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI a gRPC client dials: `http://host:port`.
    pub fn to_uri(&self) -> String {
        format!("http://{}", self.0)
    }
}

impl fmt::Display for ProducerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validated producer labels, ordered by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Validates a labels field.
    ///
    /// # Errors
    /// A [`FieldError`] naming the field (and the label) when there are too many labels, or a name or value breaks
    /// the rules in [`MAX_LABELS`], [`MAX_LABEL_NAME_BYTES`] and [`MAX_LABEL_VALUE_BYTES`].
    pub fn parse_field(field: &str, labels: BTreeMap<String, String>) -> Result<Self, FieldError> {
        if labels.len() > MAX_LABELS {
            return Err(FieldError::new(field, format!("{} labels, at most {MAX_LABELS} allowed", labels.len())));
        }
        for (name, value) in &labels {
            let label_field = || format!("{field}[{:?}]", clip(name));
            if name.is_empty() {
                return Err(FieldError::new(field, "a label name is empty; names match [a-zA-Z_][a-zA-Z0-9_]*"));
            }
            if name.len() > MAX_LABEL_NAME_BYTES {
                return Err(FieldError::new(
                    label_field(),
                    format!("name is {} bytes long, at most {MAX_LABEL_NAME_BYTES} allowed", name.len()),
                ));
            }
            let mut chars = name.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(FieldError::new(label_field(), "name must match [a-zA-Z_][a-zA-Z0-9_]*"));
            }
            if value.len() > MAX_LABEL_VALUE_BYTES {
                return Err(FieldError::new(
                    label_field(),
                    format!("value is {} bytes long, at most {MAX_LABEL_VALUE_BYTES} allowed", value.len()),
                ));
            }
        }
        Ok(Self(labels))
    }

    /// The labels, ordered by name.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Takes the labels out.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// What a registrant says about a producer: everything but its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSpec {
    /// The producer's id.
    pub id: ProducerId,
    /// Where collectors reach it.
    pub address: ProducerAddress,
    /// How often it is collected.
    pub interval: Duration,
    /// Labels added to its samples.
    pub labels: Labels,
    /// The collector an operator pinned it to, if any.
    pub pinned: Option<CollectorId>,
}

impl ProducerSpec {
    /// The entry a collector receives for this producer.
    pub fn to_assigned(&self) -> pb::AssignedProducer {
        pb::AssignedProducer {
            id: self.id.to_string(),
            address: self.address.as_str().to_owned(),
            interval_ms: duration_ms_u32(self.interval),
            labels: self.labels.as_map().clone(),
        }
    }
}

/// One producer a collector must collect: a validated `AssignedProducer` entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The producer's id.
    pub id: ProducerId,
    /// Where to reach it.
    pub address: ProducerAddress,
    /// How often to collect it.
    pub interval: Duration,
    /// Labels added to its samples.
    pub labels: Labels,
}

impl TryFrom<pb::AssignedProducer> for Target {
    type Error = FieldError;

    /// Validates an entry, naming the field that is wrong. Taken by value: a valid entry's address string and
    /// labels become the target's, not copies.
    fn try_from(p: pb::AssignedProducer) -> Result<Self, FieldError> {
        Ok(Self {
            id: ProducerId::parse_field("producers.id", &p.id)?,
            address: ProducerAddress::parse_owned("producers.address", p.address)?,
            interval: ms_in_range("producers.interval_ms", p.interval_ms, MIN_INTERVAL, MAX_INTERVAL)?,
            labels: Labels::parse_field("producers.labels", p.labels)?,
        })
    }
}

impl From<&Target> for pb::AssignedProducer {
    fn from(t: &Target) -> Self {
        Self {
            id: t.id.to_string(),
            address: t.address.as_str().to_owned(),
            interval_ms: duration_ms_u32(t.interval),
            labels: t.labels.as_map().clone(),
        }
    }
}

/// A validated `RegisterProducer` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The producer as described.
    pub spec: ProducerSpec,
    /// The lease asked for; `None` means the server's default.
    pub lease: Option<Duration>,
}

impl TryFrom<pb::RegisterProducerRequest> for Registration {
    type Error = FieldError;

    fn try_from(req: pb::RegisterProducerRequest) -> Result<Self, FieldError> {
        let id = ProducerId::parse_field("producer_id", &req.producer_id)?;
        let address = ProducerAddress::parse_field("address", &req.address)?;
        let interval = ms_in_range("interval_ms", req.interval_ms, MIN_INTERVAL, MAX_INTERVAL)?;
        let labels = Labels::parse_field("labels", req.labels)?;
        let pinned = CollectorId::parse_optional_field("pinned_collector_id", &req.pinned_collector_id)?;
        let lease = req.lease_ms.map(|ms| ms_in_range("lease_ms", ms, MIN_LEASE, MAX_LEASE)).transpose()?;
        Ok(Self { spec: ProducerSpec { id, address, interval, labels, pinned }, lease })
    }
}

/// A collector's report about one generation (C4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The reporting collector.
    pub collector: CollectorId,
    /// The epoch the generation belongs to.
    pub epoch: uuid::Uuid,
    /// The generation reported on.
    pub generation: u64,
    /// Applied, or rejected with a reason.
    pub outcome: ApplyOutcome,
}

/// What a collector did with a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Applied: the collector collects from it.
    Applied,
    /// Rejected, with the collector's reason; the collector keeps its last known set.
    Rejected(String),
}

impl TryFrom<pb::ReportAppliedRequest> for ApplyReport {
    type Error = FieldError;

    fn try_from(req: pb::ReportAppliedRequest) -> Result<Self, FieldError> {
        let collector = CollectorId::parse_field("collector_id", &req.collector_id)?;
        let epoch = parse_uuid("epoch", &req.epoch)?;
        if req.generation == 0 {
            return Err(FieldError::new("generation", "must be at least 1 (generations start at 1)"));
        }
        if req.reason.len() > MAX_REASON_BYTES {
            return Err(FieldError::new(
                "reason",
                format!("{} bytes long, at most {MAX_REASON_BYTES} allowed", req.reason.len()),
            ));
        }
        let outcome = match pb::ApplyOutcome::try_from(req.outcome) {
            Ok(pb::ApplyOutcome::Applied) => ApplyOutcome::Applied,
            Ok(pb::ApplyOutcome::Rejected) => ApplyOutcome::Rejected(req.reason),
            Ok(pb::ApplyOutcome::Unspecified) => {
                return Err(FieldError::new("outcome", "required: APPLY_OUTCOME_APPLIED or APPLY_OUTCOME_REJECTED"));
            }
            Err(_) => {
                return Err(FieldError::new(
                    "outcome",
                    format!(
                        "unknown value {}; expected APPLY_OUTCOME_APPLIED (1) or APPLY_OUTCOME_REJECTED (2)",
                        req.outcome
                    ),
                ));
            }
        };
        Ok(Self { collector, epoch, generation: req.generation, outcome })
    }
}

/// A validated `Watch` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchParams {
    /// The watching collector.
    pub collector: CollectorId,
    /// The (epoch, generation) it applied last, if any.
    pub known: Option<(uuid::Uuid, u64)>,
    /// The watching process's instance id, if it gave one (two at once mean a copied data directory).
    pub instance: Option<uuid::Uuid>,
}

impl TryFrom<pb::WatchRequest> for WatchParams {
    type Error = FieldError;

    fn try_from(req: pb::WatchRequest) -> Result<Self, FieldError> {
        let collector = CollectorId::parse_field("collector_id", &req.collector_id)?;
        let known = if req.known_epoch.is_empty() {
            if req.known_generation != 0 {
                return Err(FieldError::new("known_generation", "must be 0 when known_epoch is empty"));
            }
            None
        } else {
            Some((parse_uuid("known_epoch", &req.known_epoch)?, req.known_generation))
        };
        let instance =
            if req.instance_id.is_empty() { None } else { Some(parse_uuid("instance_id", &req.instance_id)?) };
        Ok(Self { collector, known, instance })
    }
}

/// A validated `ListProducers` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerQuery {
    /// Page size, within 1..=[`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// List producers whose id is greater than this one.
    pub after: Option<ProducerId>,
    /// Only producers assigned to this collector.
    pub collector: Option<CollectorId>,
}

const PAGE_TOKEN_PREFIX: &str = "p1.";
const STATUS_PAGE_TOKEN_PREFIX: &str = "s1.";

impl ProducerQuery {
    /// The opaque page token that continues a listing after `last`.
    pub fn page_token_after(last: ProducerId) -> String {
        format!("{PAGE_TOKEN_PREFIX}{}", last.0.simple())
    }
}

/// A page size field: unset means [`DEFAULT_PAGE_SIZE`]; 1 to [`MAX_PAGE_SIZE`] is accepted.
fn page_size(value: Option<u32>) -> Result<u32, FieldError> {
    match value {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n @ 1..=MAX_PAGE_SIZE) => Ok(n),
        Some(n) => Err(FieldError::new(
            "page_size",
            format!("{n} is out of range: use 1 to {MAX_PAGE_SIZE}, or leave it unset for {DEFAULT_PAGE_SIZE}"),
        )),
    }
}

/// A page token of `call`, made by the server with `prefix`: the producer id the next page starts after. Empty
/// means the first page.
fn page_token(call: &str, prefix: &str, token: &str) -> Result<Option<ProducerId>, FieldError> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(prefix)
        .filter(|rest| rest.len() == 32)
        .and_then(|rest| Uuid::try_parse(rest).ok())
        .map(|id| Some(ProducerId(id)))
        .ok_or_else(|| {
            FieldError::new(
                "page_token",
                format!(
                    "{:?} is not a token from a previous {call} page; pass the next_page_token you were given, or \
                     leave it empty for the first page",
                    clip(token)
                ),
            )
        })
}

impl TryFrom<pb::ListProducersRequest> for ProducerQuery {
    type Error = FieldError;

    fn try_from(req: pb::ListProducersRequest) -> Result<Self, FieldError> {
        let page_size = page_size(req.page_size)?;
        let after = page_token("ListProducers", PAGE_TOKEN_PREFIX, &req.page_token)?;
        let collector = CollectorId::parse_optional_field("collector_id", &req.collector_id)?;
        Ok(Self { page_size, after, collector })
    }
}

/// A validated `GetStatus` request (a collector's status API): which page of its producers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    /// Page size, within 1..=[`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// List producers whose id is greater than this one.
    pub after: Option<ProducerId>,
}

impl StatusQuery {
    /// The opaque page token that continues a status listing after `last`.
    pub fn page_token_after(last: ProducerId) -> String {
        format!("{STATUS_PAGE_TOKEN_PREFIX}{}", last.0.simple())
    }
}

impl TryFrom<pb::GetStatusRequest> for StatusQuery {
    type Error = FieldError;

    fn try_from(req: pb::GetStatusRequest) -> Result<Self, FieldError> {
        Ok(Self {
            page_size: page_size(req.page_size)?,
            after: page_token("GetStatus", STATUS_PAGE_TOKEN_PREFIX, &req.page_token)?,
        })
    }
}

/// Converts a millisecond field to a duration within `[min, max]`.
///
/// # Errors
/// A [`FieldError`] naming `field` when the value is outside the range.
pub fn ms_in_range(field: &str, ms: u32, min: Duration, max: Duration) -> Result<Duration, FieldError> {
    let d = Duration::from_millis(u64::from(ms));
    if d < min || d > max {
        return Err(FieldError::new(
            field,
            format!("{ms} ms is out of range: use {} to {} ms", min.as_millis(), max.as_millis()),
        ));
    }
    Ok(d)
}

/// A duration in whole milliseconds, saturating at `u32::MAX` (every validated duration fits).
pub fn duration_ms_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Shortens a client-supplied value for an error message, so a huge bad value does not make a huge error.
fn clip(value: &str) -> String {
    const MAX: usize = 64;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &value[..end], value.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::RegisterProducerRequest {
        pb::RegisterProducerRequest {
            producer_id: Uuid::new_v4().to_string(),
            address: "127.0.0.1:9100".into(),
            interval_ms: 1000,
            ..Default::default()
        }
    }

    fn field_of(req: pb::RegisterProducerRequest) -> String {
        Registration::try_from(req).expect_err("must be rejected").field
    }

    #[test]
    fn valid_registration_is_normalised() {
        let mut req = request();
        req.address = "http://Metrics.Example:9100".into();
        req.labels.insert("job".into(), "node".into());
        let reg = Registration::try_from(req).expect("valid");
        assert_eq!(reg.spec.address.as_str(), "metrics.example:9100");
        assert_eq!(reg.spec.interval, Duration::from_secs(1));
        assert_eq!(reg.lease, None);
        for ok in ["[::1]:9100", "10.0.0.1:1", "localhost:65535"] {
            assert!(ProducerAddress::parse_field("address", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut pb::RegisterProducerRequest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("producer_id", Box::new(|r| r.producer_id = "not-a-uuid".into())),
            ("producer_id", Box::new(|r| r.producer_id.clear())),
            ("address", Box::new(|r| r.address.clear())),
            ("address", Box::new(|r| r.address = "no-port".into())),
            ("address", Box::new(|r| r.address = "host:0".into())),
            ("address", Box::new(|r| r.address = "host:99999".into())),
            ("address", Box::new(|r| r.address = "https://host:1".into())),
            ("address", Box::new(|r| r.address = "host:1/path".into())),
            ("address", Box::new(|r| r.address = "h".repeat(300) + ":1")),
            ("interval_ms", Box::new(|r| r.interval_ms = 0)),
            ("interval_ms", Box::new(|r| r.interval_ms = 99)),
            ("interval_ms", Box::new(|r| r.interval_ms = u32::MAX)),
            ("lease_ms", Box::new(|r| r.lease_ms = Some(0))),
            ("lease_ms", Box::new(|r| r.lease_ms = Some(u32::MAX))),
            ("pinned_collector_id", Box::new(|r| r.pinned_collector_id = "x".into())),
            ("labels", Box::new(|r| r.labels = (0..33).map(|i| (format!("l{i}"), String::new())).collect())),
            (
                "labels[\"1bad\"]",
                Box::new(|r| {
                    r.labels.insert("1bad".into(), "v".into());
                }),
            ),
            (
                "labels[\"ok\"]",
                Box::new(|r| {
                    r.labels.insert("ok".into(), "v".repeat(257));
                }),
            ),
            (
                "labels",
                Box::new(|r| {
                    r.labels.insert(String::new(), "v".into());
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut req = request();
            mutate(&mut req);
            assert_eq!(field_of(req), field);
        }
    }

    #[test]
    fn page_tokens_round_trip_and_bogus_ones_are_named() {
        let id = ProducerId::new_random();
        let q = ProducerQuery::try_from(pb::ListProducersRequest {
            page_token: ProducerQuery::page_token_after(id),
            ..Default::default()
        })
        .expect("valid token");
        assert_eq!(q.after, Some(id));
        assert_eq!(q.page_size, DEFAULT_PAGE_SIZE);
        for (size, token) in [(Some(0), ""), (Some(1001), ""), (None, "garbage"), (None, "p1.zz")] {
            let err = ProducerQuery::try_from(pb::ListProducersRequest {
                page_size: size,
                page_token: token.into(),
                ..Default::default()
            })
            .expect_err("must be rejected");
            assert!(err.field == "page_size" || err.field == "page_token", "{err}");
        }

        let q = StatusQuery::try_from(pb::GetStatusRequest {
            page_size: Some(1000),
            page_token: StatusQuery::page_token_after(id),
        })
        .expect("valid token");
        assert_eq!((q.page_size, q.after), (1000, Some(id)));
        let err = StatusQuery::try_from(pb::GetStatusRequest {
            page_size: None,
            page_token: ProducerQuery::page_token_after(id),
        })
        .expect_err("a ListProducers token is not a GetStatus one");
        assert!(err.to_string().starts_with("page_token: ") && err.to_string().contains("GetStatus"), "{err}");
        assert_eq!(StatusQuery::try_from(pb::GetStatusRequest::default()).unwrap().page_size, DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn long_values_are_clipped_in_messages() {
        let err = parse_uuid("producer_id", &"x".repeat(10_000)).expect_err("bad");
        assert!(err.to_string().len() < 300, "{err}");
    }
}

#[cfg(test)]
mod address_fast_path {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The no-copy path accepts only what the full parse accepts, and keeps it exactly as the full parse would.
        #[test]
        fn the_fast_path_agrees_with_the_full_parse(value in "[a-zA-Z0-9.:\\[\\]-]{0,12}:[0-9]{0,6}") {
            let fast = ProducerAddress::parse_owned("f", value.clone());
            let full = ProducerAddress::parse_field("f", &value);
            prop_assert_eq!(fast.is_ok(), full.is_ok(), "{}", value);
            if let (Ok(fast), Ok(full)) = (fast, full) {
                prop_assert_eq!(fast.as_str(), full.as_str());
            }
        }
    }

    #[test]
    fn normal_addresses_are_kept_and_others_normalised() {
        assert!(is_normal_host_port("127.0.0.1:9100"));
        assert!(is_normal_host_port("metrics.example:9100"));
        for other in ["Metrics.example:9100", "[::1]:9100", "http://a:1", "a:0", "a:", ":1", "a:99999", "a"] {
            assert!(!is_normal_host_port(other), "{other}");
        }
        assert_eq!(ProducerAddress::parse_owned("f", "HOST:1".into()).unwrap().as_str(), "host:1");
    }
}
