//! The local certificate authority of `roster up --secure`: a CA and the certificates of the server, the
//! collector, the demo producers and the operator, made with rcgen (on ring) in `DATA_DIR/tls` and reused on the
//! next run while every file still loads (present, within its validity dates, its key matching).
//!
//! Each client certificate names its caller in a `roster://` URI SAN, as the server's authentication reads it
//! (`roster::auth`): `roster://operator/local`, `roster://collector/<id>`, `roster://producer`. The collector's
//! and the producers' certificates also name `localhost` and `127.0.0.1` and serve (the status API,
//! `roster.v1.Producer`). Keys are written readable by their owner only.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use roster::{
    domain::CollectorId,
    transport::{ClientTlsFiles, IdentityFiles},
};

/// How many years a certificate made here is valid for, counted from the start of this year; the CA's.
const CA_YEARS: i32 = 10;
/// The leaves'.
const LEAF_YEARS: i32 = 2;

/// The files of the local CA.
#[derive(Debug, Clone)]
pub(super) struct LocalCa {
    /// The CA's certificate: the bundle every party verifies the others with.
    pub(super) ca: PathBuf,
    /// roster-server's.
    pub(super) server: IdentityFiles,
    /// The collector's (`roster://collector/<id>`).
    pub(super) collector: IdentityFiles,
    /// The demo producers' (`roster://producer`).
    pub(super) producer: IdentityFiles,
    /// The operator's, for the CLI and grpcurl (`roster://operator/local`).
    pub(super) operator: IdentityFiles,
    /// Whether they were made by this run (rather than reused).
    pub(super) made: bool,
}

/// The local CA in `dir` for the collector `collector`: reused when every file loads, made anew otherwise.
///
/// # Errors
/// When the directory or a file cannot be written.
pub(super) fn ensure(dir: &Path, collector: CollectorId) -> anyhow::Result<LocalCa> {
    let identity =
        |name: &str| IdentityFiles { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}-key.pem")) };
    let mut local = LocalCa {
        ca: dir.join("ca.pem"),
        server: identity("server"),
        // Named by the id, so a collector with a new id never gets a certificate naming the old one.
        collector: identity(&format!("collector-{collector}")),
        producer: identity("producer"),
        operator: identity("operator"),
        made: false,
    };
    let usable = [&local.server, &local.collector, &local.producer, &local.operator]
        .into_iter()
        .all(|identity| ClientTlsFiles { ca: local.ca.clone(), identity: Some(identity.clone()) }.load().is_ok());
    if !usable {
        make(dir, &local, collector)?;
        local.made = true;
    }
    Ok(local)
}

/// Makes the CA and every certificate, writing them over what `dir` holds.
fn make(dir: &Path, local: &LocalCa, collector: CollectorId) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let year = this_year();
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, "roster up local CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + CA_YEARS, 1, 1);
    let ca_key = KeyPair::generate()?;
    let ca_cert = params.self_signed(&ca_key)?;
    write(&local.ca, &ca_cert.pem(), false)?;
    write(&dir.join("ca-key.pem"), &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(params, ca_key);

    let leaf = |files: &IdentityFiles, name: &str, uri: Option<String>, client: bool| -> anyhow::Result<()> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(uri) = uri {
            params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        if client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + LEAF_YEARS, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(&files.key, &key.serialize_pem(), true)?;
        write(&files.cert, &cert.pem(), false)
    };
    leaf(&local.server, "roster-server", None, false)?;
    leaf(&local.collector, "roster-collector", Some(format!("roster://collector/{collector}")), true)?;
    leaf(&local.producer, "roster demo producer", Some("roster://producer".to_owned()), true)?;
    leaf(&local.operator, "roster operator", Some("roster://operator/local".to_owned()), true)
}

/// This year, by the system clock (the average Gregorian year is close enough for dates set on 1 January of the
/// year before and years after).
fn this_year() -> i32 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    1970 + i32::try_from(seconds / 31_556_952).unwrap_or(0)
}

/// Writes `text` to `path`, readable by its owner only when `private`.
fn write(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
