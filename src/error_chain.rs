//! The one way roster prints an error: the error, then each of its sources, on one line.
//!
//! Every error type in roster follows one rule, so that nothing is printed twice: **an error's `Display` says what
//! failed in its own words and never repeats its source; the source is returned by `Error::source` only.** With
//! `thiserror` that means a field marked `#[source]` or `#[from]` is not interpolated into `#[error("…")]`, and a
//! wrapper that adds nothing is `#[error(transparent)]`. Logs, the CLI, the binaries' exit messages and the
//! collector's status all print through [`chain`] or [`status_line`], which walk the sources.
//!
//! Types roster does not own may break the rule in one known way: `tonic::Status::from_error` copies its source's
//! text into the status message. So a source whose text is exactly the part printed before it is not printed again
//! (equal text, never a substring: a source that says more is always printed).
//!
//! One error of a library roster uses names no fix, so the chain adds it ([`CA_AS_SERVER_CERTIFICATE`]).

use std::{
    error::Error,
    fmt::{self, Display},
};

/// What the chain adds after rustls's `CaUsedAsEndEntity` (webpki's refusal of a peer whose own certificate is a CA
/// certificate, as `openssl req -x509` makes one by default; Go and curl accept such a certificate when it is in
/// their CA file, so users meet this when they point roster at a peer others already trust).
pub const CA_AS_SERVER_CERTIFICATE: &str = "(the peer's certificate is itself a CA certificate, as `openssl req -x509` \
     makes by default, and cannot be its own server certificate: have that CA issue the peer a certificate, or make \
     the peer's self-signed certificate with -addext basicConstraints=critical,CA:FALSE)";

/// An error and its sources, displayed as `outer: inner: innermost`.
///
/// ```
/// # use roster::error_chain::chain;
/// let e = std::io::Error::other("disk full");
/// assert_eq!(chain(&e).to_string(), "disk full");
/// ```
pub fn chain<'a>(error: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(error)
}

/// The [`Display`] of [`chain`].
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        f.write_str(&text)?;
        write_sources(f, text, self.0.source())
    }
}

/// A gRPC status as one line: its code, its message, and its sources (a transport error, say).
pub fn status_line(status: &tonic::Status) -> String {
    struct Line<'a>(&'a tonic::Status);
    impl Display for Line<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:?}: {}", self.0.code(), self.0.message())?;
            write_sources(f, self.0.message().to_owned(), self.0.source())
        }
    }
    Line(status).to_string()
}

fn write_sources(
    f: &mut fmt::Formatter<'_>,
    mut previous: String,
    mut source: Option<&(dyn Error + 'static)>,
) -> fmt::Result {
    let mut ca_as_server = previous.contains("CaUsedAsEndEntity");
    // Bounded: a source chain is finite, but a cyclic one (a bug elsewhere) must not hang a log line.
    for _ in 0..32 {
        let Some(e) = source else {
            return if ca_as_server { write!(f, " {CA_AS_SERVER_CERTIFICATE}") } else { Ok(()) };
        };
        let text = e.to_string();
        if text != previous {
            write!(f, ": {text}")?;
        }
        ca_as_server |= text.contains("CaUsedAsEndEntity");
        previous = text;
        source = e.source();
    }
    f.write_str(": …")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("migration 0002 failed")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_source_is_printed_once_in_order() {
        let e = Outer(Middle(std::io::Error::other("disk full")));
        assert_eq!(chain(&e).to_string(), "cannot open the store: migration 0002 failed: disk full");
    }

    #[test]
    fn a_status_names_its_code_and_its_sources() {
        let status = tonic::Status::from_error(Box::new(std::io::Error::other("connection refused")));
        // tonic copies the source's text into the message; it is printed once.
        assert_eq!(status_line(&status), "Unknown: connection refused");
        let status = tonic::Status::from_error(Box::new(Outer(Middle(std::io::Error::other("disk full")))));
        assert_eq!(status_line(&status), "Unknown: cannot open the store: migration 0002 failed: disk full");
        assert_eq!(status_line(&tonic::Status::unavailable("draining")), "Unavailable: draining");
    }

    #[test]
    fn a_ca_certificate_used_as_a_server_certificate_is_explained() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(std::io::Error::other("CaUsedAsEndEntity")),
        )));
        let e = Outer(Middle(std::io::Error::other(refused)));
        let text = chain(&e).to_string();
        assert!(text.starts_with("cannot open the store: migration 0002 failed: invalid peer certificate"), "{text}");
        assert!(text.ends_with(CA_AS_SERVER_CERTIFICATE), "{text}");
        assert!(!chain(&Outer(Middle(std::io::Error::other("disk full")))).to_string().contains("CA certificate"));
    }
}
