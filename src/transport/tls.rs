//! TLS for every roster server and client: certificates, keys and CA bundles read from PEM files and checked once
//! where they enter, the server's reloadable configuration, and the client's.
//!
//! - [`TlsError`] is every reason a file cannot be used, each naming the file: unreadable, no certificate, no key,
//!   a key that does not match its certificate, a certificate outside its validity dates.
//! - [`ServerTlsFiles`] names a server's certificate, key and (for mutual TLS) the CA of client certificates;
//!   [`ServerTls`] is the loaded configuration a [`ServerTransport`](super::ServerTransport) serves with. tonic
//!   builds its own TLS acceptor once, with one certificate, so roster runs its own acceptor (see `acceptor.rs`)
//!   and swaps the configuration it uses when the files change or SIGHUP arrives ([`ServerTls::watch`]).
//!   Existing connections keep the session they made, so live streams stay up across a reload; a file that fails
//!   to load is logged and the configuration in force stays.
//! - [`ClientTlsFiles`] names the CA that signed the server's certificate and, for mutual TLS, the client's own
//!   certificate and key; [`ClientTls`] is what [`ClientOptions`](super::ClientOptions) dials `https://` with.
//!   It reads the files again for each endpoint it makes, so a client that reconnects with a new endpoint (the
//!   feed follower, on every reconnect) presents a rotated certificate without a restart; files that fail to
//!   load then are logged once and the last good ones stay in force.
//!
//! rustls runs on *ring* only: servers are built with it explicitly, and [`install_crypto_provider`] makes it the
//! process default that tonic's client connector picks up.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{error, info};

use crate::error_chain::chain;

/// How often a server checks whether its certificate, key or client CA files changed, unless told otherwise.
pub const DEFAULT_RELOAD_POLL: Duration = Duration::from_secs(1);
/// The longest a client may take to finish its TLS handshake with a server, unless told otherwise; a client that
/// connects and sends nothing is dropped then.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes rustls' *ring* provider the process default. Every roster binary calls it first in `main`; tonic's
/// client connector takes the process default. Calling it again does nothing.
pub fn install_crypto_provider() {
    // Err means a provider is installed already: the first call made it ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The *ring* provider that every server configuration is built with, whatever the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate, key or CA bundle cannot be used. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key.
    #[error(
        "{} holds no private key (expected PEM: -----BEGIN PRIVATE KEY-----, or an RSA or EC private key)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The file's PEM or the certificate in it cannot be parsed.
    #[error("{} is not a valid {what}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it should hold: "certificate", "private key", "CA bundle".
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A certificate in the file is not valid yet.
    #[error("the certificate in {} is not valid before {not_before} (the clock says {now})", path.display())]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// Its notBefore date.
        not_before: String,
        /// The time of the check.
        now: String,
    },
    /// A certificate in the file has expired.
    #[error("the certificate in {} expired on {not_after} (the clock says {now}); renew it", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its notAfter date.
        not_after: String,
        /// The time of the check.
        now: String,
    },
    /// The key is not the certificate's.
    #[error(
        "the private key in {} does not match the certificate in {} (give the key the certificate was issued for)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// A certificate chain and its private key, as PEM files: the leaf first, then any intermediates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl IdentityFiles {
    /// The identity `--tls-cert` and `--tls-key` name: `None` unless both are given (each program's flags require
    /// the other one).
    pub fn from_flags(cert: Option<PathBuf>, key: Option<PathBuf>) -> Option<Self> {
        cert.zip(key).map(|(cert, key)| Self { cert, key })
    }
}

/// A checked certificate chain and key.
struct LoadedIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl IdentityFiles {
    /// Reads and checks both files: a certificate within its validity dates, and a key that is the certificate's.
    fn load(&self) -> Result<LoadedIdentity, TlsError> {
        let cert_pem = read(&self.cert)?;
        let chain = certificates(&self.cert, &cert_pem, "certificate")?;
        let key_pem = read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: self.key.clone() },
            e => TlsError::Invalid { path: self.key.clone(), what: "private key", reason: e.to_string() },
        })?;
        let signing_key = provider().key_provider.load_private_key(key.clone_key()).map_err(|e| TlsError::Invalid {
            path: self.key.clone(),
            what: "private key",
            reason: e.to_string(),
        })?;
        rustls::sign::CertifiedKey::new(chain.clone(), signing_key).keys_match().map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                TlsError::KeyMismatch { cert: self.cert.clone(), key: self.key.clone() }
            }
            e => TlsError::Invalid { path: self.cert.clone(), what: "certificate", reason: e.to_string() },
        })?;
        Ok(LoadedIdentity { chain, key, cert_pem, key_pem })
    }
}

/// The whole of `path`.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Every certificate in `pem` (read from `path`), each checked to be within its validity dates now.
fn certificates(path: &Path, pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid { path: path.to_owned(), what, reason };
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    let now = x509_parser::time::ASN1Time::now();
    for der in &certs {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| invalid(e.to_string()))?;
        let validity = cert.validity();
        if now < validity.not_before {
            return Err(TlsError::NotYetValid {
                path: path.to_owned(),
                not_before: validity.not_before.to_string(),
                now: now.to_string(),
            });
        }
        if now > validity.not_after {
            return Err(TlsError::Expired {
                path: path.to_owned(),
                not_after: validity.not_after.to_string(),
                now: now.to_string(),
            });
        }
    }
    Ok(certs)
}

/// The certificates of the CA bundle at `path` as trust roots.
fn roots(path: &Path) -> Result<(RootCertStore, Vec<u8>), TlsError> {
    let pem = read(path)?;
    let mut store = RootCertStore::empty();
    for cert in certificates(path, &pem, "CA bundle")? {
        store.add(cert).map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            what: "CA bundle",
            reason: e.to_string(),
        })?;
    }
    Ok((store, pem))
}

/// A server's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server's certificate chain and key.
    pub identity: IdentityFiles,
    /// The CA bundle that client certificates are verified against (mutual TLS); `None` asks for none.
    pub client_ca: Option<PathBuf>,
    /// With a `client_ca`: whether a client must present a certificate. When `false`, a client may connect
    /// without one (and authenticate otherwise, e.g. with a token), but a certificate it presents is verified.
    pub client_cert_required: bool,
}

impl ServerTlsFiles {
    /// Reads and checks the files, and makes the rustls configuration: TLS 1.2 and 1.3, ALPN `h2`.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file that cannot be used.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let identity = self.identity.load()?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls' default protocol versions");
        let builder = match &self.client_ca {
            Some(path) => {
                let (roots, _) = roots(path)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if self.client_cert_required { verifier } else { verifier.allow_unauthenticated() };
                let verifier = verifier.build().map_err(|e| TlsError::Invalid {
                    path: path.clone(),
                    what: "CA bundle",
                    reason: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(identity.chain, identity.key).map_err(|e| TlsError::Invalid {
            path: self.identity.cert.clone(),
            what: "certificate",
            reason: e.to_string(),
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// Every file, for noticing a change.
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [self.identity.cert.as_path(), self.identity.key.as_path()].into_iter().chain(self.client_ca.as_deref())
    }
}

/// Counts of a server's TLS events, for its metrics and tests.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Connections whose handshake failed or timed out (plaintext clients included).
    pub handshake_failures: AtomicU64,
    /// Reloads that put new files in force.
    pub reloads: AtomicU64,
    /// Reloads refused because a file could not be used (the previous configuration stayed).
    pub reload_failures: AtomicU64,
}

/// A server's TLS: the configuration in force, which [`ServerTls::watch`] replaces when the files change.
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    files: ServerTlsFiles,
    current: watch::Sender<Arc<ServerConfig>>,
    counters: Arc<TlsCounters>,
    /// How often the files are checked for a change.
    pub reload_poll: Duration,
    /// The longest a TLS handshake may take.
    pub handshake_timeout: Duration,
}

impl ServerTls {
    /// Loads `files` (a start error if they cannot be used), checking them for changes every
    /// [`DEFAULT_RELOAD_POLL`] and giving each handshake [`DEFAULT_HANDSHAKE_TIMEOUT`].
    ///
    /// # Errors
    /// A [`TlsError`] naming the file that cannot be used.
    pub fn load(files: ServerTlsFiles) -> Result<Self, TlsError> {
        let config = files.load()?;
        Ok(Self {
            files,
            current: watch::Sender::new(config),
            counters: Arc::default(),
            reload_poll: DEFAULT_RELOAD_POLL,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// The configuration in force: each new connection's handshake takes it.
    pub(super) fn config(&self) -> Arc<ServerConfig> {
        self.current.borrow().clone()
    }

    /// The server's TLS counters.
    pub fn counters(&self) -> &Arc<TlsCounters> {
        &self.counters
    }

    /// Loads the files again and puts them in force, or, when one cannot be used, logs which and why and keeps
    /// the configuration in force. Returns whether the new files are in force.
    pub fn reload(&self) -> bool {
        match self.files.load() {
            Ok(config) => {
                self.current.send_replace(config);
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                info!(cert = %self.files.identity.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                self.counters.reload_failures.fetch_add(1, Ordering::Relaxed);
                error!(error = %chain(&e), "TLS files not reloaded; the certificate in force stays");
                false
            }
        }
    }

    /// Reloads when a file's size or modification time changes (checked every [`ServerTls::reload_poll`]) and on
    /// SIGHUP, until dropped. Polling, rather than file notifications, also sees a file replaced by renaming or
    /// through a symbolic link swapped over it (how Kubernetes updates a mounted secret), at the cost of a `stat`
    /// of two or three files a second.
    pub async fn watch(self) {
        // A failure to listen is logged; the files are then reloaded when they change only.
        let mut hangup = crate::process::Listener::hangup();
        let mut seen = self.stamps();
        let mut poll = tokio::time::interval(self.reload_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    let now = self.stamps();
                    if now != seen {
                        seen = now;
                        self.reload();
                    }
                }
                () = hangup.recv() => {
                    info!("reloading the TLS files (SIGHUP)");
                    seen = self.stamps();
                    self.reload();
                }
            }
        }
    }

    /// Each file's size and modification time, `None` for one that cannot be read.
    fn stamps(&self) -> Vec<Option<(u64, SystemTime)>> {
        self.files
            .paths()
            .map(|path| std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))))
            .collect()
    }
}

/// The TLS files of a program that both calls and serves (`--tls-ca`, `--tls-cert`, `--tls-key`: roster-collector,
/// roster-demo-producer): as a client it verifies servers against the CA and presents its certificate; as a server
/// it serves that certificate and verifies a client certificate against the CA when one is presented.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerTlsFiles {
    /// The CA bundle (`--tls-ca`).
    pub ca: Option<PathBuf>,
    /// The program's certificate and key (`--tls-cert`, `--tls-key`).
    pub identity: Option<IdentityFiles>,
}

impl PeerTlsFiles {
    /// The client side: `None` without a CA (plaintext).
    ///
    /// # Errors
    /// A [`TlsError`] naming the file that cannot be used.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        let files = self.ca.clone().map(|ca| ClientTlsFiles { ca, identity: self.identity.clone() });
        files.map(|files| files.load()).transpose()
    }

    /// The server side: `None` without a certificate (plaintext); client certificates verified when presented,
    /// never required.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file that cannot be used.
    pub fn server(&self) -> Result<Option<ServerTls>, TlsError> {
        let files = self.identity.clone().map(|identity| ServerTlsFiles {
            identity,
            client_ca: self.ca.clone(),
            client_cert_required: false,
        });
        files.map(ServerTls::load).transpose()
    }
}

/// A client's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA bundle the server's certificate is verified against.
    pub ca: PathBuf,
    /// The client's own certificate and key, presented for mutual TLS.
    pub identity: Option<IdentityFiles>,
}

impl ClientTlsFiles {
    /// Reads and checks the files.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file that cannot be used.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        let config = self.config()?;
        Ok(ClientTls { files: self.clone(), current: Arc::new(Mutex::new(CurrentClientTls { config, failure: None })) })
    }

    /// Reads and checks the files, and makes tonic's configuration of them.
    fn config(&self) -> Result<ClientTlsConfig, TlsError> {
        let (_, ca_pem) = roots(&self.ca)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        if let Some(identity) = &self.identity {
            let loaded = identity.load()?;
            config = config.identity(Identity::from_pem(loaded.cert_pem, loaded.key_pem));
        }
        // tonic parses the same PEM again when it makes a connector; what it could refuse was checked above.
        Endpoint::from_static("https://localhost").tls_config(config.clone()).map_err(|e| TlsError::Invalid {
            path: self.ca.clone(),
            what: "CA bundle",
            reason: chain(&e).to_string(),
        })?;
        Ok(config)
    }
}

/// Whether `error` or one of its sources is a TLS client's finding that the server answered in plaintext: what
/// rustls reports when the bytes that came back are no TLS record. The CLI looks for it to say that an `https://`
/// URL names a plaintext server.
pub fn answered_in_plaintext(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        let rustls_error = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            None => e.downcast_ref::<rustls::Error>(),
        };
        matches!(rustls_error, Some(rustls::Error::InvalidMessage(_)))
    })
}

/// A client's checked TLS configuration, used for every `https://` URL it dials. Each new endpoint reads the
/// files again, so a rotated client certificate is presented on the next connection without a restart. Cloning
/// shares the last good configuration.
#[derive(Debug, Clone)]
pub struct ClientTls {
    files: ClientTlsFiles,
    current: Arc<Mutex<CurrentClientTls>>,
}

/// The last configuration that loaded, and why the files last failed to load (until they load again).
#[derive(Debug)]
struct CurrentClientTls {
    config: ClientTlsConfig,
    failure: Option<String>,
}

impl ClientTls {
    /// The files read again and put in force; when one cannot be used, the last good configuration, and the
    /// file and the reason logged once (until the files load again or fail for another reason).
    pub(super) fn reloaded(&self) -> ClientTlsConfig {
        let loaded = self.files.config();
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match loaded {
            Ok(config) => {
                if current.failure.take().is_some() {
                    info!(ca = %self.files.ca.display(), "client TLS files usable again and in force");
                }
                current.config = config;
            }
            Err(e) => {
                let reason = chain(&e).to_string();
                if current.failure.as_ref() != Some(&reason) {
                    error!(error = %reason, "client TLS files not reloaded; the last good ones stay in force");
                    current.failure = Some(reason);
                }
            }
        }
        current.config.clone()
    }
}
