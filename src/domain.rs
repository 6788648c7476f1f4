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
/// Longest metrics path of a Prometheus target, in bytes.
pub const MAX_METRICS_PATH_BYTES: usize = 1024;
/// The metrics path of a Prometheus target that gives none, as Prometheus's own default.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";
/// Longest rejection reason kept from a `ReportApplied`, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Default page size of list calls.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size of list calls.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Largest generation a client may claim to know (`WatchRequest.known_generation`): 2^53 - 1.
///
/// A server bumps a collector's generation once per change, so no honest store comes near it in any lifetime, and
/// it is the largest integer every JSON client (JavaScript's `Number`) reads exactly. A claim above it is refused
/// rather than believed: the server jumps a collector's generation past a claimed one (a store restored from an
/// older backup), and a claim near `u64::MAX` would leave no room to count up.
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

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

/// A bad field is `INVALID_ARGUMENT` whose message starts with the field's name, in every roster service: the one
/// place this code is chosen (roster-server's other errors are mapped in its `error` module).
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

            /// Reads an id from data a server accepted earlier (a store row, a snapshot entry, a state file),
            /// perhaps a version with looser rules: any UUID, the nil one included, so that a rule made stricter
            /// never makes stored data unreadable or a snapshot unusable. New input goes through
            /// [`Self::parse_field`].
            ///
            /// # Errors
            /// A [`FieldError`] naming `field` when the value is not a UUID at all.
            pub fn parse_accepted(field: &str, value: &str) -> Result<Self, FieldError> {
                Uuid::parse_str(value)
                    .map(Self)
                    .map_err(|e| FieldError::new(field, format!("{:?} is not a UUID ({e})", clip(value))))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        /// Parses a command-line or file value with the same rules as [`Self::parse_field`] (the nil UUID
        /// is refused); the error says what is wrong, the caller names the flag.
        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                check_uuid(s).map(Self).map_err(InvalidValue)
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

/// A value given outside a request (a flag, an environment variable, a file) that is not acceptable: what is wrong
/// and what is expected. The caller names where it came from (clap prefixes the flag's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Parses a required UUID field. The nil UUID (all zeros) is refused: it is what an unset id looks like in many
/// languages, never a real id.
///
/// # Errors
/// A [`FieldError`] naming `field` when the value is empty, not a UUID, or the nil UUID.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, FieldError> {
    check_uuid(value).map_err(|problem| FieldError::new(field, problem))
}

/// The one check behind [`parse_uuid`] and the ids' `FromStr`: a UUID, and not the nil one.
fn check_uuid(value: &str) -> Result<Uuid, String> {
    const EXAMPLE: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    if value.is_empty() {
        return Err(format!("required, but empty (expected a UUID such as {EXAMPLE})"));
    }
    let uuid = Uuid::parse_str(value)
        .map_err(|e| format!("{:?} is not a UUID ({e}); expected e.g. {EXAMPLE}", clip(value)))?;
    if uuid.is_nil() {
        return Err(format!(
            "{:?} is the nil UUID (all zeros), which is never a valid id; use a random UUID such as {EXAMPLE}",
            clip(value)
        ));
    }
    Ok(uuid)
}

/// A producer's address, normalised to `host:port` (no scheme, no path): see [`parse_host_port`] for the rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerAddress(String);

/// What a `host:port` looks like, for error messages.
pub const HOST_PORT_EXAMPLES: &str = "host:port, e.g. 127.0.0.1:9100, metrics.example:9100 or [::1]:9100";

/// Longest DNS name, in bytes (RFC 1035; without the trailing dot).
const MAX_HOST_NAME_BYTES: usize = 253;
/// Longest DNS label, in bytes (RFC 1035).
const MAX_LABEL_BYTES: usize = 63;

/// Whether `value` is `host:port` with a lowercase DNS name or IPv4 host and a port without leading zeros: a form
/// that [`ProducerAddress::parse_field`] accepts and leaves as it is. A quick screen only: the host is still
/// checked by [`parse_host`].
fn is_normal_host_port(value: &str) -> bool {
    let Some((host, port)) = value.rsplit_once(':') else { return false };
    value.len() <= MAX_ADDRESS_BYTES
        && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !port.starts_with('0')
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
        && check_host(host).is_ok()
}

/// The one parser of `host:port`, shared by producer addresses and server URLs ([`crate::endpoint::ServerUrl`]).
/// Returns the normalised form, or what is wrong with `value` (without the field's name).
///
/// The rules:
/// - the host is a DNS name of RFC 1123 labels (each 1–63 letters, digits or hyphens, not starting or ending
///   with a hyphen; at most 253 bytes; no empty label, so no `a..b` and no trailing dot), an IPv4 address in
///   dotted-decimal form (a name whose last label is all digits must be one), or an IPv6 address in brackets
///   without a zone (`[fe80::1%eth0]` names an interface of one machine and cannot be dialled from another);
/// - the port is decimal, 1 to 65535; leading zeros are dropped (`host:080` is `host:80`);
/// - names are lowercased, IPv6 addresses written in their canonical short form.
///
/// # Errors
/// A sentence saying what is wrong (the caller adds the field and [`HOST_PORT_EXAMPLES`]).
pub fn parse_host_port(value: &str) -> Result<String, String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("has a '[' without its ']'")?;
        let port = after.strip_prefix(':').ok_or(if after.is_empty() {
            "has no port"
        } else {
            "has something other than :port after ']'"
        })?;
        (parse_ipv6(inside)?, port)
    } else {
        let (host, port) = value.rsplit_once(':').ok_or("has no port")?;
        if host.contains(':') {
            return Err("has an IPv6 address without brackets; write it as [addr]:port, e.g. [::1]:9100".into());
        }
        (parse_host(host)?, port)
    };
    let port = parse_port(port)?;
    Ok(format!("{host}:{port}"))
}

/// A port: decimal digits, 1 to 65535, leading zeros dropped.
fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("has no port after ':'".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("has port {:?}, which is not a number; use 1-65535", clip(port)));
    }
    let significant = port.trim_start_matches('0');
    match significant.parse::<u32>() {
        _ if significant.is_empty() => Err("has port 0, which cannot be dialled; use 1-65535".into()),
        Ok(n @ 1..=65_535) => Ok(u16::try_from(n).unwrap_or(u16::MAX)),
        _ => Err(format!("has port {}, which is out of range; use 1-65535", clip(significant))),
    }
}

/// The inside of `[...]`: an IPv6 address without a zone, in canonical form, with its brackets.
fn parse_ipv6(inside: &str) -> Result<String, String> {
    if inside.contains('%') {
        return Err(
            "has a zone-scoped IPv6 address (%zone names a network interface of one machine, so a collector elsewhere \
             cannot reach it); use a global or unique-local address without %zone"
                .into(),
        );
    }
    let addr: std::net::Ipv6Addr =
        inside.parse().map_err(|_| format!("has [{}], which is not an IPv6 address", clip(inside)))?;
    Ok(format!("[{addr}]"))
}

/// A host that is not in brackets: an IPv4 address or an RFC 1123 DNS name, lowercased.
fn parse_host(host: &str) -> Result<String, String> {
    check_host(host)?;
    Ok(host.to_ascii_lowercase())
}

/// Whether a host that is not in brackets is an IPv4 address or an RFC 1123 DNS name (any case). Allocates only
/// for the error.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("has no host before ':'".into());
    }
    let last_label = host.rsplit('.').next().unwrap_or(host);
    if !last_label.is_empty() && last_label.bytes().all(|b| b.is_ascii_digit()) {
        // RFC 1123 §2.1 / RFC 3696 §2: a name never ends in an all-numeric label, so this is meant as an address.
        // The standard parser takes only the canonical dotted-decimal form (no leading zeros, no short forms).
        return host.parse::<std::net::Ipv4Addr>().map(|_| ()).map_err(|_| {
            format!(
                "has host {:?}, which is not an IPv4 address (write four numbers 0-255 without leading zeros)",
                clip(host)
            )
        });
    }
    if host.len() > MAX_HOST_NAME_BYTES {
        return Err(format!("has a host name of {} bytes; at most {MAX_HOST_NAME_BYTES} are allowed", host.len()));
    }
    for label in host.split('.') {
        let problem = if label.is_empty() {
            "has an empty label (`..`, or a leading or trailing dot)".to_owned()
        } else if label.len() > MAX_LABEL_BYTES {
            format!("has a label of {} bytes; at most {MAX_LABEL_BYTES} are allowed", label.len())
        } else if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            format!(
                "has label {:?}, which holds a character other than a letter, digit, hyphen or underscore (for \
                 an internationalised name, use its xn-- form)",
                clip(label)
            )
        } else if label.starts_with('-') || label.ends_with('-') {
            format!("has label {:?}, which starts or ends with a hyphen", clip(label))
        } else {
            continue;
        };
        return Err(format!(
            "{problem}; a host name is letters, digits and hyphens in dot-separated labels (RFC 1123), and \
             underscores, which container and service names use and resolvers accept"
        ));
    }
    Ok(())
}

impl ProducerAddress {
    /// Parses and normalises an address field: `host:port` (rules in [`parse_host_port`]), optionally with an
    /// `http://` prefix and a trailing `/`.
    ///
    /// # Errors
    /// A [`FieldError`] naming `field` when the value is empty, too long, has a path or another scheme, or breaks
    /// a rule of [`parse_host_port`].
    pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Err(FieldError::new(field, format!("required, but empty (expected {HOST_PORT_EXAMPLES})")));
        }
        if value.len() > MAX_ADDRESS_BYTES {
            return Err(FieldError::new(
                field,
                format!("{} bytes long, at most {MAX_ADDRESS_BYTES} allowed", value.len()),
            ));
        }
        let bad =
            |why: &str| FieldError::new(field, format!("{:?} {why} (expected {HOST_PORT_EXAMPLES})", clip(value)));
        // Schemes are case-insensitive (RFC 3986 §3.1), as `ServerUrl` reads them.
        let scheme = |s: &str| value.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
        let bare = if scheme("http://") { &value["http://".len()..] } else { value };
        let bare = bare.strip_suffix('/').unwrap_or(bare);
        if scheme("https://") {
            return Err(bad(
                "asks for TLS in the address: give host:port; TLS to gRPC producers is set on the collector, \
                 with roster-collector --producer-tls",
            ));
        }
        if bare.contains("://") {
            return Err(bad("has a scheme other than http://"));
        }
        if bare.contains(['/', '?', '#', '@']) {
            return Err(bad("is not a bare host:port"));
        }
        parse_host_port(bare).map(Self).map_err(|why| bad(&why))
    }

    /// Reads an address from data a server accepted earlier (a snapshot entry, a state file, a store row),
    /// keeping `value` itself when it is already in normal form (a lowercase DNS name or IPv4 address and a port,
    /// as the server sends them): no parse, and no copy of a `String` (a `&str` is copied once, into the address).
    ///
    /// An address that [`ProducerAddress::parse_field`] refuses is still kept when it is a lowercase `host:port`
    /// a channel can dial (a URI authority with a host and a non-zero port): a server from before the stricter
    /// rules (issue 10) accepted such addresses (`a..b:80`), and a rule made stricter must neither stop a
    /// server from loading its store, nor a collector from reading its state file, nor discard a whole snapshot.
    /// Only new registrations are held to the strict rules.
    ///
    /// # Errors
    /// A [`FieldError`] naming `field` when the value is not a dialable `host:port` at all.
    pub fn parse_accepted(field: &str, value: impl AsRef<str> + Into<String>) -> Result<Self, FieldError> {
        let text = value.as_ref();
        if is_normal_host_port(text) {
            return Ok(Self(value.into()));
        }
        match Self::parse_field(field, text) {
            Ok(address) => Ok(address),
            Err(strict) => {
                let dialable = text.bytes().all(|b| !b.is_ascii_uppercase())
                    && text
                        .parse::<http::uri::Authority>()
                        .is_ok_and(|a| !a.host().is_empty() && a.port_u16().is_some_and(|p| p != 0));
                if dialable { Ok(Self(value.into())) } else { Err(strict) }
            }
        }
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
///
/// Shared, not copied, when cloned: a producer's labels (up to 32 × 320 bytes) are held by the applied snapshot,
/// its collection task and the status view at once, and a snapshot of 20 000 such producers is 200 MB encoded.
///
/// Kept in one allocation, because a server holds one per producer (issue 17's memory goal): each label is two
/// `char`s whose code points are the byte lengths of its name and its value (at most [`MAX_LABEL_NAME_BYTES`] and
/// [`MAX_LABEL_VALUE_BYTES`], far below the surrogates), then the name and the value. For a producer's usual two
/// labels that is one allocation of some 50 bytes, where a `BTreeMap` took some 700 (a node for eleven entries,
/// and a string each) and a slice of `String`s some 240.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(std::sync::Arc<str>);

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A label's length as [`Labels`] keeps it.
fn length_char(len: usize) -> char {
    u32::try_from(len).ok().and_then(char::from_u32).expect("a validated label's length is below the surrogates")
}

/// The labels of a [`Labels`], in order.
#[derive(Debug, Clone)]
pub struct LabelsIter<'a>(&'a str);

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let mut chars = self.0.chars();
        let (name_len, value_len) = (chars.next()? as usize, chars.next()? as usize);
        let (name, rest) = chars.as_str().split_at(name_len);
        let (value, rest) = rest.split_at(value_len);
        self.0 = rest;
        Some((name, value))
    }
}

impl Labels {
    /// Validates a labels field.
    ///
    /// # Errors
    /// A [`FieldError`] naming the field (and the label) when there are too many labels, or a name or value breaks
    /// the rules in [`MAX_LABELS`], [`MAX_LABEL_NAME_BYTES`] and [`MAX_LABEL_VALUE_BYTES`].
    pub fn parse_field(field: &str, labels: BTreeMap<String, String>) -> Result<Self, FieldError> {
        Self::parse_sorted(field, labels.iter().map(|(name, value)| (name.as_str(), value.as_str())))
    }

    /// As [`Self::parse_field`], given the labels as (name, value) pairs ordered by name, each name once (as a map
    /// holds them): what a follower reads straight from an entry's bytes, with no map of strings in between.
    ///
    /// # Errors
    /// As [`Self::parse_field`].
    pub fn parse_sorted<'a>(
        field: &str,
        labels: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Result<Self, FieldError> {
        if labels.len() > MAX_LABELS {
            return Err(FieldError::new(field, format!("{} labels, at most {MAX_LABELS} allowed", labels.len())));
        }
        for (name, value) in labels.clone() {
            if let Err(problem) = check_label(name, value) {
                // An empty name cannot name its label: the field is named instead.
                let at = if name.is_empty() { field.to_owned() } else { format!("{field}[{:?}]", clip(name)) };
                return Err(FieldError::new(at, problem));
            }
        }
        let mut kept = String::with_capacity(labels.clone().map(|(name, value)| name.len() + value.len() + 4).sum());
        for (name, value) in labels {
            kept.push(length_char(name.len()));
            kept.push(length_char(value.len()));
            kept.push_str(name);
            kept.push_str(value);
        }
        Ok(Self(kept.into()))
    }

    /// The labels (name, value), ordered by name.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter(&self.0)
    }

    /// A copy as a map, for a protobuf message or JSON.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(name, value)| (name.to_owned(), value.to_owned())).collect()
    }

    /// Whether `other` is this very allocation (a clone of it), not only equal.
    pub fn shares(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The rules one label keeps (see [`Labels::parse_field`]): what is wrong with its name or its value, if anything.
fn check_label(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a label name is empty; names match [a-zA-Z_][a-zA-Z0-9_]*".into());
    }
    if name.len() > MAX_LABEL_NAME_BYTES {
        return Err(format!("name is {} bytes long, at most {MAX_LABEL_NAME_BYTES} allowed", name.len()));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("name must match [a-zA-Z_][a-zA-Z0-9_]*".into());
    }
    if value.len() > MAX_LABEL_VALUE_BYTES {
        return Err(format!("value is {} bytes long, at most {MAX_LABEL_VALUE_BYTES} allowed", value.len()));
    }
    Ok(())
}

/// Parses a duration flag such as `500ms` or `15s` that must lie within `[min, max]`, the bounds the server holds the
/// field it is sent as to: a value the server would refuse stops the program at start, a usage error naming the flag
/// (clap's `value_parser`), rather than failing (or, for a producer that keeps itself registered, being retried) at
/// every call.
///
/// # Errors
/// What is wrong and the range to use.
pub fn parse_duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let range = format!("use {} to {}", humantime::format_duration(min), humantime::format_duration(max));
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 15s, 5m; {range})"))?;
    if !(min..=max).contains(&duration) {
        return Err(format!("{text} is out of range: {range}"));
    }
    Ok(duration)
}

/// Parses a collection interval flag (`--interval`), within the bounds of a registration's `interval_ms`
/// ([`MIN_INTERVAL`] to [`MAX_INTERVAL`]).
///
/// # Errors
/// As [`parse_duration_within`].
pub fn parse_interval_flag(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, MIN_INTERVAL, MAX_INTERVAL)
}

/// Parses a lease flag (`--lease`), within the bounds of a registration's `lease_ms` ([`MIN_LEASE`] to
/// [`MAX_LEASE`]).
///
/// # Errors
/// As [`parse_duration_within`].
pub fn parse_lease_flag(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, MIN_LEASE, MAX_LEASE)
}

/// Parses one occurrence of a `--label name=value` flag: the name is what comes before the first `=`, the value
/// everything after it, verbatim (commas and further `=` included), so any value can be written. More labels are
/// more occurrences of the flag; [`labels_from_flags`] gathers them.
///
/// The label is held to the rules of [`Labels::parse_field`] here, so a bad one stops the program at start (a usage
/// error, clap naming the flag); the rules of the labels together (a name given twice, how many) are
/// [`labels_from_flags`]'s.
///
/// # Errors
/// An [`InvalidValue`] when there is no `=`, or the name or the value breaks a rule.
pub fn parse_label_flag(text: &str) -> Result<(String, String), InvalidValue> {
    let (name, value) = text.split_once('=').ok_or_else(|| {
        InvalidValue(format!(
            "{:?} has no '='; write name=value (one label per flag: --label job=node --label team=a,b)",
            clip(text)
        ))
    })?;
    check_label(name, value).map_err(|problem| {
        InvalidValue(if name.is_empty() { problem } else { format!("label {:?}: {problem}", clip(name)) })
    })?;
    Ok((name.to_owned(), value.to_owned()))
}

/// Gathers label flags (see [`parse_label_flag`]) into labels that follow [`Labels::parse_field`]'s rules.
///
/// # Errors
/// A [`FieldError`] naming `flag` when a name is given twice or a label breaks a rule.
pub fn labels_from_flags(flag: &str, pairs: Vec<(String, String)>) -> Result<Labels, FieldError> {
    let mut labels = BTreeMap::new();
    for (name, value) in pairs {
        if labels.contains_key(&name) {
            return Err(FieldError::new(flag, format!("label {:?} is given twice; give each name once", clip(&name))));
        }
        labels.insert(name, value);
    }
    Labels::parse_field(flag, labels)
}

/// A producer's kind: which protocol collects it (`roster.v1.ProducerKind` without its "unset" value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProducerKind {
    /// roster's own `roster.v1.Producer` service over gRPC: every producer from before kinds existed.
    Grpc,
    /// A Prometheus HTTP target (text format 0.0.4 or OpenMetrics 1.0).
    Prometheus,
}

impl ProducerKind {
    /// Every kind, in declaration (and wire) order: a kind's discriminant is its index here.
    pub const ALL: [Self; 2] = [Self::Grpc, Self::Prometheus];

    /// The kind's name where roster writes it for people and scripts (the CLI, its JSON, the store): `grpc`,
    /// `prometheus`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Prometheus => "prometheus",
        }
    }

    /// The kind named by [`Self::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The wire value.
    pub fn to_pb(self) -> pb::ProducerKind {
        match self {
            Self::Grpc => pb::ProducerKind::Grpc,
            Self::Prometheus => pb::ProducerKind::Prometheus,
        }
    }

    /// The kind of a wire value: unset means gRPC; `None` for a number that is not a `ProducerKind`.
    pub fn from_pb(value: i32) -> Option<Self> {
        match pb::ProducerKind::try_from(value).ok()? {
            pb::ProducerKind::Unspecified | pb::ProducerKind::Grpc => Some(Self::Grpc),
            pb::ProducerKind::Prometheus => Some(Self::Prometheus),
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Grpc => 1,
            Self::Prometheus => 2,
        }
    }
}

impl fmt::Display for ProducerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a kind's name ([`ProducerKind::as_str`]) given as a flag (`--kind prometheus`).
impl FromStr for ProducerKind {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s)
            .ok_or_else(|| InvalidValue(format!("{:?} is not a producer kind; use grpc or prometheus", clip(s))))
    }
}

/// The producer kinds a collector can collect (`WatchRequest.supported_kinds`): gRPC always, others as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SupportedKinds(u8);

impl SupportedKinds {
    /// gRPC only: what a collector that lists nothing (one from before kinds existed) supports.
    pub const GRPC_ONLY: Self = Self(1);
    /// Every kind this build knows.
    pub const ALL: Self = Self(3);

    /// These kinds and `kind`.
    #[must_use]
    pub fn with(self, kind: ProducerKind) -> Self {
        Self(self.0 | kind.bit())
    }

    /// Whether `kind` is among them.
    pub fn contains(self, kind: ProducerKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The kinds, in wire order.
    pub fn iter(self) -> impl Iterator<Item = ProducerKind> {
        ProducerKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }

    /// Reads a `supported_kinds` list: gRPC is implied, unset values and numbers this build does not know are
    /// ignored (a newer collector may list kinds an older server cannot assign; it simply gets none of them).
    pub fn from_pb(values: &[i32]) -> Self {
        values.iter().filter_map(|v| ProducerKind::from_pb(*v)).fold(Self::GRPC_ONLY, Self::with)
    }

    /// The list sent in a `WatchRequest` (or shown in `CollectorInfo`), gRPC included.
    pub fn to_pb(self) -> Vec<i32> {
        self.iter().map(|k| k.to_pb() as i32).collect()
    }

    /// The kinds' names joined by commas (`grpc,prometheus`), as the store keeps them and the CLI shows them.
    pub fn names(self) -> String {
        self.iter().map(ProducerKind::as_str).collect::<Vec<_>>().join(",")
    }

    /// Reads what [`Self::names`] wrote; gRPC is implied.
    ///
    /// # Errors
    /// An [`InvalidValue`] naming a kind that is not one.
    pub fn from_names(names: &str) -> Result<Self, InvalidValue> {
        names
            .split(',')
            .filter(|n| !n.is_empty())
            .try_fold(Self::GRPC_ONLY, |kinds, name| name.parse().map(|k| kinds.with(k)))
    }
}

impl Default for SupportedKinds {
    fn default() -> Self {
        Self::GRPC_ONLY
    }
}

/// The scheme a Prometheus target is scraped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Plain HTTP (the default).
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// Parses a scheme field: empty means `http`; `http` and `https` in any case.
    ///
    /// # Errors
    /// A [`FieldError`] naming `field` for anything else.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() || value.eq_ignore_ascii_case("http") {
            Ok(Self::Http)
        } else if value.eq_ignore_ascii_case("https") {
            Ok(Self::Https)
        } else {
            Err(FieldError::new(field, format!("{:?} is not http or https (empty means http)", clip(value))))
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The path a Prometheus target serves its metrics on: starts with `/`, at most [`MAX_METRICS_PATH_BYTES`], no
/// query, fragment, whitespace or control characters, and a valid URI path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricsPath(String);

impl MetricsPath {
    /// Parses a metrics path field: empty means [`DEFAULT_METRICS_PATH`].
    ///
    /// # Errors
    /// A [`FieldError`] naming `field` when the path breaks a rule above.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Ok(Self(DEFAULT_METRICS_PATH.to_owned()));
        }
        let bad = |why: &str| FieldError::new(field, format!("{:?} {why}", clip(value)));
        if value.len() > MAX_METRICS_PATH_BYTES {
            return Err(FieldError::new(
                field,
                format!("{} bytes long, at most {MAX_METRICS_PATH_BYTES} allowed", value.len()),
            ));
        }
        if !value.starts_with('/') {
            return Err(bad("must start with / (e.g. /metrics)"));
        }
        if value.contains(['?', '#']) {
            return Err(bad("has a query or fragment (? or #); give the path alone"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("holds whitespace or a control character"));
        }
        if !value.is_ascii() {
            return Err(bad("holds a character other than ASCII; percent-encode it (%XX)"));
        }
        if value.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(bad("is not a valid URI path (escape other characters as %XX)"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MetricsPath {
    fn default() -> Self {
        Self(DEFAULT_METRICS_PATH.to_owned())
    }
}

impl fmt::Display for MetricsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a Prometheus HTTP target needs beyond its address: `GET scheme://address/metrics_path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PrometheusTarget {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The path scraped.
    pub metrics_path: MetricsPath,
    /// The time limit of each scrape, below the interval; `None` means the collector's default.
    pub scrape_timeout: Option<Duration>,
}

impl PrometheusTarget {
    /// Validates a `prometheus` field of a producer collected every `interval`; `prefix` names it (`prometheus`,
    /// `producers.prometheus`). Unset means every default.
    ///
    /// # Errors
    /// A [`FieldError`] naming `prefix.scheme`, `prefix.metrics_path` or `prefix.scrape_timeout_ms`.
    pub fn parse_field(
        prefix: &str,
        target: Option<pb::PrometheusTarget>,
        interval: Duration,
    ) -> Result<Self, FieldError> {
        let target = target.unwrap_or_default();
        let scheme = Scheme::parse_field(&format!("{prefix}.scheme"), &target.scheme)?;
        let metrics_path = MetricsPath::parse_field(&format!("{prefix}.metrics_path"), &target.metrics_path)?;
        let scrape_timeout = match target.scrape_timeout_ms {
            None => None,
            Some(0) => {
                return Err(FieldError::new(
                    format!("{prefix}.scrape_timeout_ms"),
                    "0 is not a time limit; give 1 ms or more, or leave it unset for the collector's default",
                ));
            }
            Some(ms) if u128::from(ms) >= interval.as_millis() => {
                return Err(FieldError::new(
                    format!("{prefix}.scrape_timeout_ms"),
                    format!(
                        "{ms} is not below interval_ms {}: a scrape must end before the next one is due",
                        interval.as_millis()
                    ),
                ));
            }
            Some(ms) => Some(Duration::from_millis(u64::from(ms))),
        };
        Ok(Self { scheme, metrics_path, scrape_timeout })
    }

    /// The URL scraped at `address`: `scheme://host:port/path`.
    pub fn url(&self, address: &ProducerAddress) -> String {
        format!("{}://{}{}", self.scheme, address, self.metrics_path)
    }

    /// The wire form, defaults filled in.
    pub fn to_pb(&self) -> pb::PrometheusTarget {
        pb::PrometheusTarget {
            scheme: self.scheme.as_str().to_owned(),
            metrics_path: self.metrics_path.as_str().to_owned(),
            scrape_timeout_ms: self.scrape_timeout.map(duration_ms_u32),
        }
    }
}

/// How a producer is collected: its kind, with what that kind needs. Part of [`ProducerSpec`] and [`Target`], so a
/// change of any of it is a changed entry (C6: the collection task restarts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Collection {
    /// `roster.v1.Producer` over gRPC at the address.
    Grpc,
    /// A Prometheus HTTP target.
    Prometheus(PrometheusTarget),
}

impl Collection {
    /// The kind.
    pub fn kind(&self) -> ProducerKind {
        match self {
            Self::Grpc => ProducerKind::Grpc,
            Self::Prometheus(_) => ProducerKind::Prometheus,
        }
    }

    /// The wire fields `(kind, prometheus)` of an entry or an info. A gRPC entry carries kind 0 (unset) and no
    /// `prometheus`, so it is encoded exactly as before kinds existed; `kind_if_grpc` says what `ProducerInfo`
    /// shows instead (it names the kind).
    fn to_pb(&self, kind_if_grpc: pb::ProducerKind) -> (i32, Option<pb::PrometheusTarget>) {
        match self {
            Self::Grpc => (kind_if_grpc as i32, None),
            Self::Prometheus(target) => (pb::ProducerKind::Prometheus as i32, Some(target.to_pb())),
        }
    }

    /// The wire fields `(kind, prometheus)` of a `ProducerInfo`: the kind always named.
    pub fn to_info_pb(&self) -> (i32, Option<pb::PrometheusTarget>) {
        self.to_pb(pb::ProducerKind::Grpc)
    }

    /// Validates the `kind` and `prometheus` fields of a producer collected every `interval`; `prefix` is empty for
    /// a request, `producers.` for a snapshot entry.
    ///
    /// # Errors
    /// A [`FieldError`] naming `kind` for a number that is not a kind, `prometheus` when it is set for a gRPC
    /// producer, or a field of `prometheus` (see [`PrometheusTarget::parse_field`]).
    pub fn parse_fields(
        prefix: &str,
        kind: i32,
        prometheus: Option<pb::PrometheusTarget>,
        interval: Duration,
    ) -> Result<Self, FieldError> {
        match ProducerKind::from_pb(kind) {
            None => Err(FieldError::new(
                format!("{prefix}kind"),
                format!("{kind} is not a producer kind; use PRODUCER_KIND_GRPC (1) or PRODUCER_KIND_PROMETHEUS (2)"),
            )),
            Some(ProducerKind::Grpc) if prometheus.is_some() => Err(FieldError::new(
                format!("{prefix}prometheus"),
                "set, but the kind is gRPC (unset kind means gRPC); give kind PRODUCER_KIND_PROMETHEUS, or leave \
                 prometheus unset",
            )),
            Some(ProducerKind::Grpc) => Ok(Self::Grpc),
            Some(ProducerKind::Prometheus) => Ok(Self::Prometheus(PrometheusTarget::parse_field(
                &format!("{prefix}prometheus"),
                prometheus,
                interval,
            )?)),
        }
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
    /// The collector its registrant pinned it to, if any (an operator pin, kept apart from the registration,
    /// wins over it).
    pub pinned: Option<CollectorId>,
    /// How it is collected.
    pub collection: Collection,
}

impl ProducerSpec {
    /// The entry a collector receives for this producer (a gRPC one byte for byte as before kinds existed).
    pub fn to_assigned(&self) -> pb::AssignedProducer {
        let (kind, prometheus) = self.collection.to_pb(pb::ProducerKind::Unspecified);
        pb::AssignedProducer {
            id: self.id.to_string(),
            address: self.address.as_str().to_owned(),
            interval_ms: duration_ms_u32(self.interval),
            labels: self.labels.to_map(),
            kind,
            prometheus,
        }
    }
}

/// One producer a collector must collect: a validated `AssignedProducer` entry of a snapshot, read from its bytes
/// by `crate::follower::wire::read_entry`.
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
    /// How to collect it.
    pub collection: Collection,
}

impl From<&Target> for pb::AssignedProducer {
    fn from(t: &Target) -> Self {
        let (kind, prometheus) = t.collection.to_pb(pb::ProducerKind::Unspecified);
        Self {
            id: t.id.to_string(),
            address: t.address.as_str().to_owned(),
            interval_ms: duration_ms_u32(t.interval),
            labels: t.labels.to_map(),
            kind,
            prometheus,
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
        let interval = ms_in_range("interval_ms", req.interval_ms, MIN_INTERVAL, MAX_INTERVAL)?;
        let collection = Collection::parse_fields("", req.kind, req.prometheus, interval)?;
        if collection.kind() == ProducerKind::Prometheus && req.address.contains("://") {
            return Err(FieldError::new(
                "address",
                format!(
                    "{:?} has a scheme; give host:port and set prometheus.scheme (http or https)",
                    clip(&req.address)
                ),
            ));
        }
        let address = ProducerAddress::parse_field("address", &req.address)?;
        let labels = Labels::parse_field("labels", req.labels)?;
        if collection.kind() == ProducerKind::Prometheus
            && let Some(name) = labels.iter().map(|(name, _)| name).find(|name| name.starts_with("__"))
        {
            return Err(FieldError::new(
                format!("labels[{:?}]", clip(name)),
                "names starting with __ are Prometheus's own (__address__, __scheme__, …); choose another name",
            ));
        }
        let pinned = CollectorId::parse_optional_field("pinned_collector_id", &req.pinned_collector_id)?;
        let lease = req.lease_ms.map(|ms| ms_in_range("lease_ms", ms, MIN_LEASE, MAX_LEASE)).transpose()?;
        Ok(Self { spec: ProducerSpec { id, address, interval, labels, pinned, collection }, lease })
    }
}

/// A validated `SetProducerPin` request: an operator pin to set, or to clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinChange {
    /// The producer to pin.
    pub producer: ProducerId,
    /// The collector to pin it to; `None` clears the operator pin.
    pub collector: Option<CollectorId>,
}

impl TryFrom<pb::SetProducerPinRequest> for PinChange {
    type Error = FieldError;

    fn try_from(req: pb::SetProducerPinRequest) -> Result<Self, FieldError> {
        Ok(Self {
            producer: ProducerId::parse_field("producer_id", &req.producer_id)?,
            collector: CollectorId::parse_optional_field("collector_id", &req.collector_id)?,
        })
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
    /// The digest of the server's snapshot it applied last, if it said (`known_digest`; only with `known`).
    pub known_digest: Option<u64>,
    /// Observe only (`observe_only`): follow the feed without marking the collector live or changing anything.
    pub observe: bool,
    /// The watching process's instance id, if it gave one (two at once mean a copied data directory).
    pub instance: Option<uuid::Uuid>,
    /// The producer kinds the collector can collect (gRPC always).
    pub supported_kinds: SupportedKinds,
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
        } else if req.known_generation > MAX_GENERATION {
            return Err(FieldError::new(
                "known_generation",
                format!(
                    "{} is beyond any generation a server makes (at most {MAX_GENERATION}); the client's state is damaged: delete its state file",
                    req.known_generation
                ),
            ));
        } else {
            Some((parse_uuid("known_epoch", &req.known_epoch)?, req.known_generation))
        };
        let instance =
            if req.instance_id.is_empty() { None } else { Some(parse_uuid("instance_id", &req.instance_id)?) };
        let supported_kinds = SupportedKinds::from_pb(&req.supported_kinds);
        let known_digest = (known.is_some() && req.known_digest != 0).then_some(req.known_digest);
        Ok(Self { collector, known, known_digest, observe: req.observe_only, instance, supported_kinds })
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
pub(crate) fn clip(value: &str) -> String {
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
    fn labels_give_back_what_they_were_given_at_every_length() {
        let cases: Vec<BTreeMap<String, String>> = vec![
            BTreeMap::new(),
            [("job".to_owned(), "node".to_owned()), ("zone".to_owned(), String::new())].into(),
            // The longest names and values, multi-byte characters, and the characters a value may hold.
            (0..MAX_LABELS)
                .map(|i| {
                    let name = format!("l{i:02}{}", "n".repeat(MAX_LABEL_NAME_BYTES - 3));
                    let value = match i % 3 {
                        0 => "v".repeat(MAX_LABEL_VALUE_BYTES),
                        1 => "é".repeat(MAX_LABEL_VALUE_BYTES / 2),
                        _ => format!("a=b,c\n\0{i}\u{10FFFF}"),
                    };
                    (name, value)
                })
                .collect(),
        ];
        for map in cases {
            let labels = Labels::parse_field("labels", map.clone()).unwrap();
            assert_eq!(labels.to_map(), map);
            assert_eq!(labels.iter().count(), map.len());
            assert!(labels.iter().map(|(name, _)| name).eq(map.keys().map(String::as_str)), "ordered by name");
            assert_eq!(format!("{labels:?}"), format!("{map:?}"));
            let again = Labels::parse_field("labels", map).unwrap();
            assert_eq!(labels, again);
            assert!(!labels.shares(&again) && labels.shares(&labels.clone()));
        }
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

    fn prometheus(target: pb::PrometheusTarget) -> pb::RegisterProducerRequest {
        pb::RegisterProducerRequest {
            kind: pb::ProducerKind::Prometheus as i32,
            prometheus: Some(target),
            interval_ms: 2000,
            ..request()
        }
    }

    #[test]
    fn kinds_default_to_grpc_and_prometheus_targets_get_their_defaults() {
        let grpc = Registration::try_from(request()).expect("unset kind");
        assert_eq!(grpc.spec.collection, Collection::Grpc);
        let named = pb::RegisterProducerRequest { kind: pb::ProducerKind::Grpc as i32, ..request() };
        assert_eq!(Registration::try_from(named).unwrap().spec.collection, Collection::Grpc);

        let bare = pb::RegisterProducerRequest { kind: pb::ProducerKind::Prometheus as i32, ..request() };
        let spec = Registration::try_from(bare).expect("every default").spec;
        assert_eq!(spec.collection, Collection::Prometheus(PrometheusTarget::default()));
        let Collection::Prometheus(target) = &spec.collection else { unreachable!() };
        assert_eq!(target.url(&spec.address), "http://127.0.0.1:9100/metrics");

        let given = pb::PrometheusTarget {
            scheme: "HTTPS".into(),
            metrics_path: "/probe/metrics%20x".into(),
            scrape_timeout_ms: Some(1999),
        };
        let spec = Registration::try_from(prometheus(given)).expect("valid").spec;
        let Collection::Prometheus(target) = &spec.collection else { unreachable!() };
        assert_eq!(
            (target.scheme, target.metrics_path.as_str(), target.scrape_timeout),
            (Scheme::Https, "/probe/metrics%20x", Some(Duration::from_millis(1999)))
        );
        assert_eq!(target.url(&spec.address), "https://127.0.0.1:9100/probe/metrics%20x");
    }

    #[test]
    fn each_bad_kind_or_prometheus_field_is_named() {
        let target = |scheme: &str, path: &str, timeout: Option<u32>| pb::PrometheusTarget {
            scheme: scheme.into(),
            metrics_path: path.into(),
            scrape_timeout_ms: timeout,
        };
        let cases: Vec<(&str, pb::RegisterProducerRequest)> = vec![
            ("kind", pb::RegisterProducerRequest { kind: 7, ..request() }),
            ("kind", pb::RegisterProducerRequest { kind: -1, ..request() }),
            ("prometheus", pb::RegisterProducerRequest { prometheus: Some(target("", "", None)), ..request() }),
            (
                "prometheus",
                pb::RegisterProducerRequest {
                    kind: pb::ProducerKind::Grpc as i32,
                    prometheus: Some(target("", "", None)),
                    ..request()
                },
            ),
            ("prometheus.scheme", prometheus(target("ftp", "", None))),
            ("prometheus.scheme", prometheus(target("http://", "", None))),
            ("prometheus.metrics_path", prometheus(target("", "metrics", None))),
            ("prometheus.metrics_path", prometheus(target("", "/metrics?x=1", None))),
            ("prometheus.metrics_path", prometheus(target("", "/a#b", None))),
            ("prometheus.metrics_path", prometheus(target("", "/a b", None))),
            ("prometheus.metrics_path", prometheus(target("", "/a\nb", None))),
            ("prometheus.metrics_path", prometheus(target("", "/a\u{7f}", None))),
            ("prometheus.metrics_path", prometheus(target("", "/ü", None))),
            ("prometheus.metrics_path", prometheus(target("", &format!("/{}", "a".repeat(1024)), None))),
            ("prometheus.scrape_timeout_ms", prometheus(target("", "", Some(0)))),
            ("prometheus.scrape_timeout_ms", prometheus(target("", "", Some(2000)))),
            ("prometheus.scrape_timeout_ms", prometheus(target("", "", Some(u32::MAX)))),
            (
                "address",
                pb::RegisterProducerRequest { address: "http://h:1".into(), ..prometheus(target("", "", None)) },
            ),
            (
                "address",
                pb::RegisterProducerRequest { address: "HTTPS://h:1".into(), ..prometheus(target("", "", None)) },
            ),
            (
                "labels[\"__name__\"]",
                pb::RegisterProducerRequest {
                    labels: [("__name__".to_owned(), "x".to_owned())].into(),
                    ..prometheus(target("", "", None))
                },
            ),
        ];
        for (field, req) in cases {
            let err = Registration::try_from(req.clone()).expect_err(field);
            assert_eq!(err.field, field, "{req:?}: {err}");
        }
        let err = Registration::try_from(prometheus(target("", "", Some(2000)))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prometheus.scrape_timeout_ms: 2000 is not below interval_ms 2000: a scrape must end before the next one is due"
        );
        let err = Registration::try_from(pb::RegisterProducerRequest { kind: 7, ..request() }).unwrap_err();
        assert!(err.to_string().starts_with("kind: 7 is not a producer kind"), "{err}");
        // A gRPC producer keeps its rules: labels starting with __ and an http:// prefix are its own business.
        let mut grpc = request();
        grpc.address = "http://h:1".into();
        grpc.labels.insert("__x".into(), "y".into());
        assert!(Registration::try_from(grpc).is_ok());
    }

    /// An entry as a follower reads it: encoded, then read from its bytes.
    fn read(entry: &pb::AssignedProducer) -> Result<Target, FieldError> {
        use prost::Message as _;
        match crate::follower::wire::read_entry(&entry.encode_to_vec()) {
            Ok((target, _)) => Ok(target),
            Err(crate::follower::wire::EntryError::Invalid(e)) => Err(e),
            Err(e) => panic!("an encoded message decodes: {e}"),
        }
    }

    #[test]
    fn a_grpc_entry_carries_no_kind_and_every_entry_round_trips() {
        let grpc = Registration::try_from(request()).unwrap().spec;
        let entry = grpc.to_assigned();
        assert_eq!((entry.kind, entry.prometheus.is_none()), (0, true), "a gRPC entry is what it was before kinds");
        let target = read(&entry).unwrap();
        assert_eq!(target.collection, Collection::Grpc);
        assert_eq!(pb::AssignedProducer::from(&target), entry);

        let given =
            pb::PrometheusTarget { scheme: String::new(), metrics_path: String::new(), scrape_timeout_ms: Some(5) };
        let spec = Registration::try_from(prometheus(given)).unwrap().spec;
        let entry = spec.to_assigned();
        assert_eq!(entry.kind, pb::ProducerKind::Prometheus as i32);
        let sent = entry.prometheus.clone().expect("sent with its defaults filled in");
        assert_eq!(
            (sent.scheme.as_str(), sent.metrics_path.as_str(), sent.scrape_timeout_ms),
            ("http", "/metrics", Some(5))
        );
        let target = read(&entry).unwrap();
        assert_eq!(target.collection, spec.collection);
        assert_eq!(pb::AssignedProducer::from(&target), entry);
        assert_eq!(spec.collection.to_info_pb(), (pb::ProducerKind::Prometheus as i32, Some(sent)));
        assert_eq!(Collection::Grpc.to_info_pb(), (pb::ProducerKind::Grpc as i32, None), "an info names the kind");

        let unknown = pb::AssignedProducer { kind: 9, ..grpc.to_assigned() };
        assert_eq!(read(&unknown).unwrap_err().field, "producers.kind");
        let bad_path = pb::AssignedProducer {
            prometheus: Some(pb::PrometheusTarget { metrics_path: "x".into(), ..Default::default() }),
            ..spec.to_assigned()
        };
        assert_eq!(read(&bad_path).unwrap_err().field, "producers.prometheus.metrics_path");
    }

    #[test]
    fn supported_kinds_imply_grpc_and_ignore_what_they_do_not_know() {
        assert_eq!(SupportedKinds::from_pb(&[]), SupportedKinds::GRPC_ONLY);
        assert_eq!(SupportedKinds::from_pb(&[0, 1, 42, -3]), SupportedKinds::GRPC_ONLY);
        assert_eq!(SupportedKinds::from_pb(&[2]), SupportedKinds::ALL);
        assert_eq!(SupportedKinds::ALL.to_pb(), vec![1, 2]);
        assert_eq!(SupportedKinds::GRPC_ONLY.to_pb(), vec![1]);
        assert!(!SupportedKinds::default().contains(ProducerKind::Prometheus));
        for kinds in [SupportedKinds::GRPC_ONLY, SupportedKinds::ALL] {
            assert_eq!(SupportedKinds::from_names(&kinds.names()).unwrap(), kinds);
        }
        assert_eq!(SupportedKinds::ALL.names(), "grpc,prometheus");
        assert_eq!(SupportedKinds::from_names("prometheus").unwrap(), SupportedKinds::ALL);
        assert!(SupportedKinds::from_names("grpc,http").is_err());
    }

    #[test]
    fn addresses_say_what_is_wrong_with_them() {
        for (value, needle) in [
            ("host:65536", "port 65536, which is out of range; use 1-65535"),
            ("host:99999", "out of range"),
            ("host:0", "port 0"),
            ("host:000", "port 0"),
            ("host:", "no port after ':'"),
            ("host", "has no port"),
            ("host:8o", "not a number"),
            ("a..b:80", "empty label"),
            (".a:80", "empty label"),
            ("a.:80", "empty label"),
            ("-bad-:80", "starts or ends with a hyphen"),
            ("a.-b.c:80", "starts or ends with a hyphen"),
            ("a$b:80", "other than a letter, digit, hyphen or underscore"),
            ("bücher.example:80", "xn--"),
            (&format!("{}.example:80", "a".repeat(64)), "at most 63"),
            ("[fe80::1%eth0]:80", "zone-scoped IPv6 address"),
            ("[fe80::1%25eth0]:80", "zone-scoped IPv6 address"),
            ("[::1]", "has no port"),
            ("[::1:80", "without its ']'"),
            ("[nope]:80", "not an IPv6 address"),
            ("::1:80", "IPv6 address without brackets"),
            ("1.2.3:80", "not an IPv4 address"),
            ("010.0.0.1:80", "not an IPv4 address"),
            ("256.0.0.1:80", "not an IPv4 address"),
            (":80", "no host"),
            ("https://h:1", "TLS"),
            ("HTTPS://h:1", "TLS"),
        ] {
            let err = ProducerAddress::parse_field("address", value).expect_err(value);
            assert_eq!(err.field, "address");
            assert!(err.problem.contains(needle), "{value}: {err}");
            assert!(err.problem.contains("expected host:port"), "{value}: {err}");
        }
    }

    #[test]
    fn addresses_are_normalised() {
        for (given, kept) in [
            ("host:080", "host:80"),
            ("Host.Example:00443", "host.example:443"),
            ("http://HOST:1/", "host:1"),
            ("HTTP://Host:1", "host:1"),
            ("[0:0:0:0:0:0:0:1]:9100", "[::1]:9100"),
            ("[FE80::1]:9100", "[fe80::1]:9100"),
            ("xn--bcher-kva.example:1", "xn--bcher-kva.example:1"),
            ("1a.example:1", "1a.example:1"),
            ("0x10:1", "0x10:1"),
        ] {
            assert_eq!(ProducerAddress::parse_field("address", given).expect(given).as_str(), kept);
        }
    }

    #[test]
    fn the_nil_uuid_is_never_an_id() {
        let nil = "00000000-0000-0000-0000-000000000000";
        let err = ProducerId::parse_field("producer_id", nil).expect_err("nil");
        assert!(err.problem.contains("nil UUID"), "{err}");
        assert!(CollectorId::parse_field("collector_id", nil).is_err());
        assert!(nil.parse::<CollectorId>().unwrap_err().0.contains("nil UUID"));
        assert!(nil.parse::<ProducerId>().is_err());
        let mut req = request();
        req.pinned_collector_id = nil.into();
        assert_eq!(field_of(req), "pinned_collector_id");
        let list = pb::ListProducersRequest { collector_id: nil.into(), ..Default::default() };
        assert_eq!(ProducerQuery::try_from(list).unwrap_err().field, "collector_id");
    }

    #[test]
    fn label_flags_take_the_value_verbatim_and_refuse_a_name_twice() {
        assert_eq!(parse_label_flag("hosts=a,b=c").unwrap(), ("hosts".into(), "a,b=c".into()));
        assert_eq!(parse_label_flag("empty=").unwrap(), ("empty".into(), String::new()));
        assert!(parse_label_flag("novalue").unwrap_err().0.contains("name=value"));
        assert!(parse_label_flag("=v").unwrap_err().0.starts_with("a label name is empty"));
        assert_eq!(parse_label_flag("a b=c").unwrap_err().0, "label \"a b\": name must match [a-zA-Z_][a-zA-Z0-9_]*");
        let pairs = vec![("a".to_owned(), "1".to_owned()), ("b".to_owned(), "x,y".to_owned())];
        assert_eq!(labels_from_flags("--label", pairs).unwrap().to_map()["b"], "x,y");
        let twice = vec![("a".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())];
        let err = labels_from_flags("--label", twice).unwrap_err();
        assert!(err.field == "--label" && err.problem.contains("given twice"), "{err}");
        let bad = labels_from_flags("--label", vec![("1x".to_owned(), String::new())]).unwrap_err();
        assert!(bad.to_string().starts_with("--label[\"1x\"]"), "{bad}");
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
pub(crate) mod address_fast_path {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The no-copy path takes only what the strict parse takes, and keeps it exactly as the strict parse
        /// would; whatever the strict parse takes, reading accepted data takes the same way.
        #[test]
        fn the_fast_path_agrees_with_the_full_parse(value in "[a-zA-Z0-9.:%_\\[\\]-]{0,12}:[0-9]{0,6}") {
            let full = ProducerAddress::parse_field("f", &value);
            if is_normal_host_port(&value) {
                prop_assert_eq!(full.as_ref().map(ProducerAddress::as_str), Ok(value.as_str()));
            }
            if let Ok(full) = full {
                let accepted = ProducerAddress::parse_accepted("f", value.clone());
                prop_assert_eq!(accepted.as_ref().map(ProducerAddress::as_str), Ok(full.as_str()));
            }
        }
    }

    /// A DNS name of RFC 1123 labels whose last label is not all digits (also the follower's entry generator's).
    pub(crate) fn host_name() -> impl Strategy<Value = String> {
        let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?";
        (proptest::collection::vec(label, 0..4), "[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?").prop_map(
            |(mut labels, last)| {
                labels.push(last);
                labels.join(".")
            },
        )
    }

    proptest! {
        /// Every RFC 1123 name with a port in range is accepted, lowercased, leading zeros of the port dropped, and
        /// the result is a fixed point of the parse.
        #[test]
        fn names_with_ports_in_range_are_accepted_and_normalised(
            host in host_name(),
            port in 1u16..=65_535,
            zeros in 0usize..3,
        ) {
            let given = format!("{host}:{}{port}", "0".repeat(zeros));
            let parsed = ProducerAddress::parse_field("a", &given);
            prop_assert!(parsed.is_ok(), "{}: {:?}", given, parsed);
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.as_str(), format!("{}:{port}", host.to_ascii_lowercase()));
            prop_assert_eq!(ProducerAddress::parse_field("a", parsed.as_str()).unwrap(), parsed.clone());
            prop_assert!(is_normal_host_port(parsed.as_str()), "the normal form takes the fast path");
        }

        /// A port above 65535 is refused as out of range, whatever the host.
        #[test]
        fn ports_above_65535_are_out_of_range(host in host_name(), port in 65_536u32..100_000_000) {
            let err = ProducerAddress::parse_field("a", &format!("{host}:{port}")).unwrap_err();
            prop_assert!(err.problem.contains("out of range; use 1-65535"), "{}", err);
        }

        /// A label that starts or ends with a hyphen, or an empty label, is refused wherever it is.
        #[test]
        fn bad_labels_are_refused_anywhere(
            before in proptest::collection::vec(host_name(), 0..2),
            bad in prop_oneof![Just(String::new()), "-[a-z0-9]{0,4}", "[a-z0-9]{0,4}-"],
            after in host_name(),
        ) {
            let mut labels = before;
            labels.push(bad);
            labels.push(after);
            let value = format!("{}:80", labels.join("."));
            prop_assert!(ProducerAddress::parse_field("a", &value).is_err(), "{}", value);
        }
    }

    #[test]
    fn normal_addresses_are_kept_and_others_normalised() {
        assert!(is_normal_host_port("127.0.0.1:9100"));
        assert!(is_normal_host_port("metrics.example:9100"));
        for other in [
            "Metrics.example:9100",
            "[::1]:9100",
            "http://a:1",
            "a:0",
            "a:",
            ":1",
            "a:99999",
            "a",
            "a:080",
            "a..b:1",
            "-a:1",
            "1.2.3:1",
        ] {
            assert!(!is_normal_host_port(other), "{other}");
        }
        assert_eq!(ProducerAddress::parse_accepted("f", "HOST:1").unwrap().as_str(), "host:1");
    }

    #[test]
    fn underscores_in_host_names_are_accepted_as_container_names_use_them() {
        for name in ["node_exporter:9100", "my_stack_web_1.internal:8080", "_metrics._tcp.example:80"] {
            assert_eq!(ProducerAddress::parse_field("address", name).unwrap().as_str(), name);
        }
        let refused = ProducerAddress::parse_field("address", "a$b:80").unwrap_err().to_string();
        assert!(refused.contains("letter, digit, hyphen or underscore"), "{refused}");
    }

    #[test]
    fn addresses_accepted_by_older_rules_are_still_read_but_not_registered() {
        for older in ["a..b:80", "-bad-:80"] {
            assert!(ProducerAddress::parse_field("address", older).is_err(), "{older}");
            assert_eq!(ProducerAddress::parse_accepted("producers.address", older).unwrap().as_str(), older);
        }
        for never in ["no-port", "host:0", "host:99999", "", "a b:1"] {
            assert!(ProducerAddress::parse_accepted("producers.address", never).is_err(), "{never}");
        }
        let nil = "00000000-0000-0000-0000-000000000000";
        assert!(ProducerId::parse_accepted("producers.id", nil).is_ok());
        assert!(ProducerId::parse_field("producer_id", nil).is_err());
    }
}
