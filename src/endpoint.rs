//! The address of a gRPC service roster dials (a roster-server, or a roster-collector's status API), checked once
//! where it enters: a flag, an environment variable or a library caller.
//!
//! [`ServerUrl`] is the only way the CLI, the library's client ([`crate::client::RosterClient`]), the feed
//! follower ([`crate::follower`]), the demo producer and roster-collector get from text to a channel (made by
//! [`crate::transport::ClientOptions`]), so each refuses the same things with the same words, before any
//! connection is tried: a URL without a scheme, a
//! scheme other than `http://` (plaintext) or `https://` (TLS), a path, a port outside 1–65535, and a host that
//! [`crate::domain::parse_host_port`] refuses. A refused value is a usage error, never a connection failure to
//! retry (R2). The scheme alone says whether a connection uses TLS; [`ServerUrl::check_tls`] refuses a URL whose
//! scheme disagrees with the client's TLS settings, so a client never falls back to plaintext silently.

use std::{fmt, str::FromStr};

use tonic::transport::Endpoint;

use crate::domain::{FieldError, InvalidValue, clip, parse_host_port};

/// roster-server's default address, written once for the two constants below (`concat!` takes only literals).
macro_rules! server_listen {
    () => {
        "127.0.0.1:50051"
    };
}

/// The address roster-server serves on unless told otherwise (loopback only, roster's conventional gRPC port).
pub const DEFAULT_SERVER_LISTEN: &str = server_listen!();
/// The URL of [`DEFAULT_SERVER_LISTEN`], which every client (the CLI, roster-collector, the demo producer) calls
/// unless told otherwise.
pub const DEFAULT_SERVER_URL: &str = concat!("http://", server_listen!());
/// The address of a roster-collector's status API unless told otherwise.
pub const DEFAULT_COLLECTOR_LISTEN: &str = "127.0.0.1:50061";

/// The form a server URL takes, for error messages.
pub const EXPECTED_URL: &str = "expected http://host:port or https://host:port, e.g. http://127.0.0.1:50051";

/// A validated `http://host:port` or `https://host:port` URL of a gRPC service; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    /// `http://host:port` or `https://host:port`, host and port normalised as [`parse_host_port`] does.
    text: String,
    uri: http::Uri,
}

impl ServerUrl {
    /// Parses `http://host:port` or `https://host:port` (a trailing `/` is allowed).
    ///
    /// # Errors
    /// What is wrong and what is expected, without naming where the value came from.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let bad = |why: String| InvalidValue(format!("{:?} {why} ({EXPECTED_URL})", clip(value)));
        let Some((scheme, rest)) = value.split_once("://") else {
            return Err(bad("has no scheme".into()));
        };
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(bad(format!("has scheme {scheme:?}; only http:// and https:// are supported")));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("has a path; give only the scheme, host and port".into()));
        }
        if authority.contains('@') {
            return Err(bad("has user information; give only the scheme, host and port".into()));
        }
        let host_port = parse_host_port(authority).map_err(bad)?;
        Self::from_host_port(&host_port, tls).map_err(bad)
    }

    /// Parses a service address given either as `host:port` (plaintext) or as a URL (for flags documented so,
    /// such as `roster status --collector`).
    ///
    /// # Errors
    /// As [`ServerUrl::parse`].
    pub fn parse_address_or_url(value: &str) -> Result<Self, InvalidValue> {
        if value.contains("://") {
            return Self::parse(value);
        }
        let host_port = parse_host_port(value).map_err(|why| {
            InvalidValue(format!(
                "{:?} {why} (expected host:port or http://host:port, e.g. 127.0.0.1:50061)",
                clip(value)
            ))
        })?;
        Self::from_host_port(&host_port, false).map_err(InvalidValue)
    }

    /// As [`ServerUrl::parse`], naming `field` in the error.
    ///
    /// # Errors
    /// A [`FieldError`] naming `field`.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldError> {
        Self::parse(value).map_err(|e| FieldError::new(field, e.0))
    }

    fn from_host_port(host_port: &str, tls: bool) -> Result<Self, String> {
        let text = format!("{}://{host_port}", if tls { "https" } else { "http" });
        // Every normalised host:port makes a valid URI; this only turns the text into tonic's type.
        let uri = text.parse::<http::Uri>().map_err(|e| format!("is not a valid URI ({e})"))?;
        Ok(Self { text, uri })
    }

    /// `http://host:port` or `https://host:port`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this URL is dialled over TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.uri.scheme() == Some(&http::uri::Scheme::HTTPS)
    }

    /// Checks that this URL's scheme goes with a client's TLS settings: an `https://` URL needs the CA that
    /// signed the server's certificate (`has_ca`), and a CA given for an `http://` URL means the URL was meant to
    /// be `https://`. `ca_flag` names where the CA is given (such as `--tls-ca`).
    ///
    /// # Errors
    /// The mismatch and its fix.
    pub fn check_tls(&self, has_ca: bool, ca_flag: &str) -> Result<(), InvalidValue> {
        match (self.is_tls(), has_ca) {
            (true, false) => Err(InvalidValue(format!(
                "{self} asks for TLS (https://), but no CA is given to verify the server's certificate: give \
                 {ca_flag}, or use http:// for a plaintext server"
            ))),
            (false, true) => Err(InvalidValue(format!(
                "{ca_flag} is given, but {self} is plaintext (http://): use https:// to call it over TLS, or drop \
                 {ca_flag}"
            ))),
            _ => Ok(()),
        }
    }

    /// [`ServerUrl::check_tls`] of each of `servers` (a `--server` list: one URL, or replicas'); the first mismatch.
    ///
    /// # Errors
    /// As [`ServerUrl::check_tls`].
    pub fn check_tls_all(servers: &[Self], has_ca: bool, ca_flag: &str) -> Result<(), InvalidValue> {
        servers.iter().try_for_each(|server| server.check_tls(has_ca, ca_flag))
    }

    /// `servers` as a `--server` list takes them: their URLs, comma-separated.
    pub fn joined(servers: &[Self]) -> String {
        servers.iter().map(Self::as_str).collect::<Vec<_>>().join(",")
    }

    /// A tonic endpoint for this URL, with tonic's defaults; a client's channel is made by
    /// [`ClientOptions`](crate::transport::ClientOptions), which adds roster's settings.
    pub(crate) fn endpoint(&self) -> Endpoint {
        Endpoint::from(self.uri.clone())
    }
}

impl FromStr for ServerUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::ProducerAddress;

    fn refused(value: &str) -> String {
        ServerUrl::parse(value).expect_err(value).0
    }

    #[test]
    fn http_and_https_urls_are_accepted_and_normalised() {
        for (given, kept) in [
            ("https://127.0.0.1:50051/", "https://127.0.0.1:50051"),
            ("HTTPS://Roster.Example:443", "https://roster.example:443"),
            ("http://127.0.0.1:50051", "http://127.0.0.1:50051"),
            ("http://127.0.0.1:50051/", "http://127.0.0.1:50051"),
            ("HTTP://Roster.Example:080", "http://roster.example:80"),
            ("http://[0:0:0:0:0:0:0:1]:1", "http://[::1]:1"),
        ] {
            assert_eq!(ServerUrl::parse(given).expect(given).as_str(), kept);
        }
        assert_eq!(ServerUrl::parse_address_or_url("127.0.0.1:50061").unwrap().as_str(), "http://127.0.0.1:50061");
        assert!(ServerUrl::parse("https://h:1").unwrap().is_tls());
        assert!(!ServerUrl::parse("http://h:1").unwrap().is_tls());
    }

    #[test]
    fn a_scheme_that_disagrees_with_the_tls_settings_is_refused_naming_the_flag() {
        let https = ServerUrl::parse("https://h:1").unwrap();
        let http = ServerUrl::parse("http://h:1").unwrap();
        assert!(https.check_tls(true, "--tls-ca").is_ok() && http.check_tls(false, "--tls-ca").is_ok());
        let message = https.check_tls(false, "--tls-ca").unwrap_err().0;
        assert!(message.contains("https://h:1 asks for TLS") && message.contains("give --tls-ca"), "{message}");
        let message = http.check_tls(true, "--tls-ca").unwrap_err().0;
        assert!(message.contains("--tls-ca is given, but http://h:1 is plaintext"), "{message}");
        // A list of replicas: the first URL that disagrees is named; the list is shown as --server takes it.
        let mixed = [https.clone(), http.clone()];
        let message = ServerUrl::check_tls_all(&mixed, true, "--tls-ca").unwrap_err().0;
        assert!(message.contains("http://h:1 is plaintext"), "{message}");
        assert!(ServerUrl::check_tls_all(&[https], true, "--tls-ca").is_ok());
        assert_eq!(ServerUrl::joined(&mixed), "https://h:1,http://h:1");
    }

    #[test]
    fn each_refusal_says_what_is_wrong_and_what_is_expected() {
        for (value, needle) in [
            ("127.0.0.1:50051", "has no scheme"),
            ("grpc://h:1", "only http:// and https:// are supported"),
            ("https://h:1/roster", "has a path"),
            ("http://h:1/roster", "has a path"),
            ("http://u@h:1", "user information"),
            ("http://h:99999", "port 99999, which is out of range; use 1-65535"),
            ("http://h:65536", "out of range"),
            ("http://h:0", "port 0"),
            ("http://h", "has no port"),
            ("http://a..b:1", "empty label"),
            ("http://-bad-:1", "starts or ends with a hyphen"),
            ("http://[fe80::1%eth0]:1", "zone-scoped"),
        ] {
            let message = refused(value);
            assert!(message.contains(needle), "{value}: {message}");
            assert!(message.contains("http://host:port or https://host:port"), "{value}: {message}");
        }
        let message = ServerUrl::parse_address_or_url("h:70000").unwrap_err().0;
        assert!(message.contains("out of range") && message.contains("host:port or http://host:port"), "{message}");
    }

    proptest! {
        /// A server URL is accepted exactly when its host:port would be accepted as a producer address, and
        /// holds the same normal form: one parser for both.
        #[test]
        fn urls_and_addresses_follow_the_same_host_port_rules(hp in "[a-zA-Z0-9.:%\\[\\]-]{0,16}:[0-9]{0,7}") {
            let url = ServerUrl::parse(&format!("http://{hp}"));
            let address = ProducerAddress::parse_field("address", &hp);
            prop_assert_eq!(url.is_ok(), address.is_ok(), "{}", hp);
            if let (Ok(url), Ok(address)) = (url, address) {
                prop_assert_eq!(url.as_str(), format!("http://{address}"));
                prop_assert!(url.as_str().parse::<ServerUrl>().is_ok(), "the normal form parses again");
            }
        }
    }
}
