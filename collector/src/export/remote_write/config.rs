//! The settings of one remote-write receiver, and the one parser of the command-line value that names it:
//! `remote-write=URL[,bearer-token-file=PATH|,basic-auth-user=NAME,basic-auth-password-file=PATH][,ca-file=PATH]`.
//!
//! Secrets never appear on the command line (where `ps` shows them): a bearer token and a basic-auth password are
//! read from files, once, when the value is parsed, as is the CA file; every mistake is reported then, naming the
//! option and the fix, never at the first request.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use base64::Engine as _;
use http::{HeaderValue, Uri};
use roster::backoff::BackoffPolicy;
use rustls::pki_types::{CertificateDer, pem::PemObject as _};

use crate::defaults;

/// The prefix of the command-line value of a remote-write receiver.
pub(crate) const PREFIX: &str = "remote-write=";

/// One receiver and how roster-collector writes to it. Its `Display` is the command-line value without the
/// options (no secret, no file name).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RemoteWriteConfig {
    /// Where requests go: an `http` or `https` URL with a host.
    pub(crate) url: Uri,
    /// Credentials sent with every request.
    pub(crate) auth: Option<Auth>,
    /// CA certificates that verify an `https` receiver instead of the system's.
    pub(crate) ca_file: Option<CaFile>,
    /// Parallel senders; each series is pinned to one.
    pub(crate) shards: usize,
    /// Most samples in one request.
    pub(crate) max_samples_per_send: usize,
    /// Most bytes of one request's protobuf, before compression.
    pub(crate) max_bytes_per_send: usize,
    /// How long one request may take before it is cut and retried.
    pub(crate) timeout: Duration,
    /// The backoff between retries.
    pub(crate) backoff: BackoffPolicy,
    /// The longest `Retry-After` honoured; longer ones are cut to this.
    pub(crate) retry_after_max: Duration,
    /// The most disk the receiver's queue takes.
    pub(crate) queue_max_bytes: u64,
    /// Queued samples older than this are dropped instead of sent.
    pub(crate) queue_max_age: Duration,
}

/// Credentials for a receiver: the `Authorization` header sent with every request, built once.
#[derive(Clone, PartialEq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(HeaderValue),
    /// `Authorization: Basic <base64 of user:password>`.
    Basic {
        /// The user name (shown in logs; the password never is).
        user: String,
        /// The header.
        header: HeaderValue,
    },
}

impl Auth {
    /// Bearer-token credentials; `None` if the token cannot be sent in a header (control characters).
    pub(crate) fn bearer(token: &str) -> Option<Self> {
        HeaderValue::try_from(format!("Bearer {token}")).ok().map(|header| Self::Bearer(sensitive(header)))
    }

    /// Basic-auth credentials.
    pub(crate) fn basic(user: &str, password: &str) -> Self {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        // Base64 is always a valid header value.
        let header = HeaderValue::try_from(format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static(""));
        Self::Basic { user: user.to_owned(), header: sensitive(header) }
    }

    /// The `Authorization` header value, marked sensitive.
    pub(crate) fn header(&self) -> &HeaderValue {
        match self {
            Self::Bearer(header) | Self::Basic { header, .. } => header,
        }
    }
}

/// `value`, marked sensitive: kept out of `Debug` output and HTTP/2 header tables.
fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// Never shows a secret.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(..)"),
            Self::Basic { user, .. } => f.debug_struct("Basic").field("user", user).finish_non_exhaustive(),
        }
    }
}

/// The certificates of a CA file, at least one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CaFile(pub(crate) Vec<CertificateDer<'static>>);

/// What is wrong with a remote-write value; each names the option and the fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error(
        "a remote-write sink is written `remote-write=URL[,option=value...]`; `{0}` does not start with `remote-write=`"
    )]
    Prefix(String),
    #[error("remote-write URL `{url}` is not a URL: {reason}; write it as http://host:port/api/v1/write")]
    Url { url: String, reason: String },
    #[error("remote-write URL `{0}` must start with http:// or https:// and name a host")]
    Scheme(String),
    #[error("remote-write option `{0}` is not `name=value`; the options are {OPTIONS}")]
    NotAnOption(String),
    #[error("unknown remote-write option `{0}`; the options are {OPTIONS}")]
    Unknown(String),
    #[error("remote-write option `{0}` is given twice; give it once")]
    Twice(String),
    #[error("remote-write option `{0}` has an empty value; give it one")]
    Empty(String),
    #[error(
        "remote-write has both bearer-token-file and basic-auth-user; a receiver takes one kind of credentials: \
         drop one"
    )]
    TwoAuths,
    #[error("remote-write option basic-auth-user needs basic-auth-password-file (and the other way round)")]
    HalfBasicAuth,
    #[error("cannot read remote-write {option} `{}`; make it a readable file", path.display())]
    Read {
        option: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "remote-write {option} `{}` is empty or holds more than one line; write the secret alone in it",
        path.display()
    )]
    Secret { option: &'static str, path: PathBuf },
    #[error("remote-write basic-auth-user `{0}` holds a `:`, which basic auth cannot carry; use another user name")]
    ColonInUser(String),
    #[error(
        "remote-write ca-file `{}` holds no PEM certificate; give a file with the CA's certificate in PEM",
        .0.display()
    )]
    NoCertificate(PathBuf),
    #[error(
        "remote-write {option} `{}` is unusable in an HTTP header (control characters?); fix the file",
        path.display()
    )]
    Header { option: &'static str, path: PathBuf },
}

/// The options, for error messages.
const OPTIONS: &str = "bearer-token-file=PATH, basic-auth-user=NAME, basic-auth-password-file=PATH, ca-file=PATH";

impl RemoteWriteConfig {
    /// A receiver at `url` with every other setting at its default.
    pub(crate) fn new(url: Uri) -> Self {
        Self {
            url,
            auth: None,
            ca_file: None,
            shards: defaults::REMOTE_WRITE_SHARDS,
            max_samples_per_send: defaults::REMOTE_WRITE_MAX_SAMPLES_PER_SEND,
            max_bytes_per_send: defaults::REMOTE_WRITE_MAX_BYTES_PER_SEND,
            timeout: defaults::REMOTE_WRITE_TIMEOUT,
            backoff: defaults::REMOTE_WRITE_BACKOFF,
            retry_after_max: defaults::REMOTE_WRITE_RETRY_AFTER_MAX,
            queue_max_bytes: defaults::REMOTE_WRITE_QUEUE_MAX_BYTES,
            queue_max_age: defaults::REMOTE_WRITE_QUEUE_MAX_AGE,
        }
    }

    /// The receiver's queue directory in `data_dir`: `remote-write/<host>-<port>-<hash of the URL>`, the same for
    /// the same URL at every start (so a restart finds what was queued), apart for different URLs, readable to a
    /// person looking at the data directory.
    pub(crate) fn queue_dir(&self, data_dir: &Path) -> PathBuf {
        let host: String = self
            .url
            .host()
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
            .collect();
        let port = self.url.port_u16().unwrap_or(if self.url.scheme_str() == Some("https") { 443 } else { 80 });
        let hash = xxhash_rust::xxh3::xxh3_64(self.url.to_string().as_bytes());
        data_dir.join("remote-write").join(format!("{host}-{port}-{hash:016x}"))
    }
}

impl fmt::Display for RemoteWriteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.url)
    }
}

/// Parses the whole command-line value, `remote-write=URL[,option=value...]`, reading the files it names.
impl FromStr for RemoteWriteConfig {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        let rest = value.strip_prefix(PREFIX).ok_or_else(|| ConfigError::Prefix(value.to_owned()))?;
        let mut parts = rest.split(',');
        let url = parse_url(parts.next().unwrap_or_default())?;
        let (mut token_file, mut user, mut password_file, mut ca_file) = (None, None, None, None);
        for part in parts {
            let (name, text) = part.split_once('=').ok_or_else(|| ConfigError::NotAnOption(part.to_owned()))?;
            let slot = match name {
                "bearer-token-file" => &mut token_file,
                "basic-auth-user" => &mut user,
                "basic-auth-password-file" => &mut password_file,
                "ca-file" => &mut ca_file,
                _ => return Err(ConfigError::Unknown(name.to_owned())),
            };
            if text.is_empty() {
                return Err(ConfigError::Empty(name.to_owned()));
            }
            if slot.replace(text.to_owned()).is_some() {
                return Err(ConfigError::Twice(name.to_owned()));
            }
        }
        let auth = match (token_file, user, password_file) {
            (None, None, None) => None,
            (Some(path), None, None) => {
                let option = "bearer-token-file";
                let path = PathBuf::from(path);
                let token = read_secret(option, &path)?;
                Some(Auth::bearer(&token).ok_or(ConfigError::Header { option, path })?)
            }
            (Some(_), _, _) => return Err(ConfigError::TwoAuths),
            (None, Some(user), Some(_)) if user.contains(':') => return Err(ConfigError::ColonInUser(user)),
            (None, Some(user), Some(path)) => {
                Some(Auth::basic(&user, &read_secret("basic-auth-password-file", &PathBuf::from(path))?))
            }
            (None, _, _) => return Err(ConfigError::HalfBasicAuth),
        };
        let ca_file = ca_file.map(|path| read_ca_file(path.into())).transpose()?;
        Ok(Self { auth, ca_file, ..Self::new(url) })
    }
}

fn parse_url(text: &str) -> Result<Uri, ConfigError> {
    let url: Uri = text
        .parse()
        .map_err(|e: http::uri::InvalidUri| ConfigError::Url { url: text.to_owned(), reason: e.to_string() })?;
    let scheme_ok = matches!(url.scheme_str(), Some("http" | "https"));
    if !scheme_ok || url.host().is_none_or(str::is_empty) {
        return Err(ConfigError::Scheme(text.to_owned()));
    }
    Ok(url)
}

/// A secret alone in a file: one line, its line ending dropped (as `echo token > file` writes it).
fn read_secret(option: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { option, path: path.to_owned(), source })?;
    let secret = text.strip_suffix('\n').map_or(text.as_str(), |s| s.strip_suffix('\r').unwrap_or(s));
    if secret.is_empty() || secret.contains('\n') {
        return Err(ConfigError::Secret { option, path: path.to_owned() });
    }
    Ok(secret.to_owned())
}

fn read_ca_file(path: PathBuf) -> Result<CaFile, ConfigError> {
    let pem =
        std::fs::read(&path).map_err(|source| ConfigError::Read { option: "ca-file", path: path.clone(), source })?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if certificates.is_empty() {
        return Err(ConfigError::NoCertificate(path));
    }
    Ok(CaFile(certificates))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<RemoteWriteConfig, String> {
        value.parse::<RemoteWriteConfig>().map_err(|e| e.to_string())
    }

    #[test]
    fn a_url_alone_takes_every_default() {
        let config = parse("remote-write=http://127.0.0.1:9090/api/v1/write").unwrap();
        assert_eq!(config.url, "http://127.0.0.1:9090/api/v1/write");
        assert!(config.auth.is_none() && config.ca_file.is_none());
        assert_eq!(config.shards, defaults::REMOTE_WRITE_SHARDS);
        assert_eq!(config.max_samples_per_send, defaults::REMOTE_WRITE_MAX_SAMPLES_PER_SEND);
        assert_eq!(config.timeout, defaults::REMOTE_WRITE_TIMEOUT);
        assert_eq!(config.to_string(), "remote-write=http://127.0.0.1:9090/api/v1/write");
        assert!(parse("remote-write=https://tsdb.example/api/v1/push").is_ok());
    }

    #[test]
    fn each_url_has_a_queue_directory_of_its_own_found_again_at_every_start() {
        let dir = |url: &str| parse(&format!("remote-write={url}")).unwrap().queue_dir(Path::new("/data"));
        let one = dir("http://127.0.0.1:9090/api/v1/write");
        assert!(one.to_str().unwrap().starts_with("/data/remote-write/127.0.0.1-9090-"), "{}", one.display());
        assert_eq!(one, dir("http://127.0.0.1:9090/api/v1/write"));
        assert_ne!(one, dir("http://127.0.0.1:9090/other"));
        assert!(dir("https://[::1]/w").to_str().unwrap().starts_with("/data/remote-write/___1_-443-"));
    }

    #[test]
    fn secrets_are_read_from_files_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let config = parse(&format!("remote-write=http://h/w,bearer-token-file={}", token.display())).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
        let auth = config.auth.unwrap();
        assert_eq!(auth.header(), "Bearer s3cret");
        assert!(auth.header().is_sensitive());

        let password = dir.path().join("password");
        std::fs::write(&password, "open sesame\r\n").unwrap();
        let value =
            format!("remote-write=http://h/w,basic-auth-user=ali,basic-auth-password-file={}", password.display());
        let auth = parse(&value).unwrap().auth.unwrap();
        // base64("ali:open sesame")
        assert_eq!(auth.header(), "Basic YWxpOm9wZW4gc2VzYW1l");
        assert_eq!(format!("{auth:?}"), r#"Basic { user: "ali", .. }"#);
    }

    #[test]
    fn every_mistake_names_the_option_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let two_lines = dir.path().join("two");
        std::fs::write(&two_lines, "a\nb\n").unwrap();
        let control = dir.path().join("control");
        std::fs::write(&control, "a\u{7}b").unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let missing = dir.path().join("missing");
        let cases = [
            ("http://h/w".to_owned(), "does not start with `remote-write=`"),
            ("remote-write=".to_owned(), "is not a URL"),
            ("remote-write=ftp://h/w".to_owned(), "must start with http:// or https://"),
            ("remote-write=http://h/w,ca-file".to_owned(), "is not `name=value`"),
            ("remote-write=http://h/w,password=x".to_owned(), "unknown remote-write option `password`"),
            ("remote-write=http://h/w,ca-file=".to_owned(), "`ca-file` has an empty value"),
            ("remote-write=http://h/w,basic-auth-user=a,basic-auth-user=b".to_owned(), "given twice"),
            (format!("remote-write=http://h/w,bearer-token-file={0},basic-auth-user=a", empty.display()), "drop one"),
            ("remote-write=http://h/w,basic-auth-user=a".to_owned(), "needs basic-auth-password-file"),
            (
                format!("remote-write=http://h/w,basic-auth-user=a:b,basic-auth-password-file={}", empty.display()),
                "`:`",
            ),
            (format!("remote-write=http://h/w,bearer-token-file={}", missing.display()), "make it a readable file"),
            (format!("remote-write=http://h/w,bearer-token-file={}", empty.display()), "write the secret alone"),
            (format!("remote-write=http://h/w,bearer-token-file={}", two_lines.display()), "write the secret alone"),
            (format!("remote-write=http://h/w,bearer-token-file={}", control.display()), "unusable in an HTTP header"),
            (format!("remote-write=http://h/w,ca-file={}", not_pem.display()), "holds no PEM certificate"),
        ];
        for (value, expected) in cases {
            let error = parse(&value).expect_err(&value);
            assert!(error.contains(expected), "{value}: {error}");
        }
    }
}
