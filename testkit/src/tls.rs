//! Test certificates, made fresh by each test with rcgen (no key is ever checked in): a CA ([`TestCa`]) and the
//! server and client certificates it signs ([`TestCert`]), written as PEM files where a test's servers and clients
//! read them.

use std::{fs, path::Path};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use roster::transport::{ClientTlsFiles, IdentityFiles, ServerTlsFiles};

/// A certificate authority of a test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub cert_pem: String,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server's: names `localhost` and `127.0.0.1`.
    Server,
    /// A client's, for mutual TLS: names the given URI (such as `roster://collector/<uuid>`). It may also serve
    /// (a collector's status API, a producer), so it also names `localhost` and `127.0.0.1` and has both usages.
    Client,
}

/// A leaf certificate and its key.
pub struct TestCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Its serial number, as set.
    pub serial: u64,
}

impl TestCa {
    /// A new CA named `name`, valid from 1975 to 4096 (rcgen's defaults).
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("ring makes a key");
        let cert = params.self_signed(&key).expect("a CA signs itself");
        Self { issuer: Issuer::new(params, key), cert_pem: cert.pem() }
    }

    /// A certificate for `usage` with serial `serial`, valid from 1975 to 4096. `uri` is the client's URI SAN
    /// (ignored for a server).
    pub fn issue(&self, usage: Usage, serial: u64, uri: &str) -> TestCert {
        self.issue_valid(usage, serial, uri, None)
    }

    /// As [`TestCa::issue`], valid only between the years of `years` (e.g. `(2000, 2001)`, long expired).
    pub fn issue_valid(&self, usage: Usage, serial: u64, uri: &str, years: Option<(i32, i32)>) -> TestCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("the names are valid");
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        if usage == Usage::Client {
            params.subject_alt_names.push(SanType::URI(uri.try_into().expect("an ASCII URI")));
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.distinguished_name.push(DnType::CommonName, format!("{usage:?} {serial}"));
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        params.key_usages.push(KeyUsagePurpose::DigitalSignature);
        if let Some((from, to)) = years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().expect("ring makes a key");
        let cert = params.signed_by(&key, &self.issuer).expect("the CA signs");
        TestCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial }
    }

    /// Writes the CA's certificate to `dir/ca.pem` and returns its path.
    pub fn write(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("ca.pem");
        fs::write(&path, &self.cert_pem).expect("the test directory is writable");
        path
    }
}

impl TestCert {
    /// Writes the certificate and key to `dir/NAME.pem` and `dir/NAME-key.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> IdentityFiles {
        let files = IdentityFiles { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}-key.pem")) };
        fs::write(&files.key, &self.key_pem).expect("the test directory is writable");
        fs::write(&files.cert, &self.cert_pem).expect("the test directory is writable");
        files
    }
}

/// A test's TLS setup in one directory: a CA, a server certificate (serial 1) and a client certificate for
/// `client_uri` (serial 100), written as files.
pub struct TlsSetup {
    /// The CA.
    pub ca: TestCa,
    /// The CA's file.
    pub ca_file: std::path::PathBuf,
    /// The server's certificate and key files.
    pub server: IdentityFiles,
    /// The client's certificate and key files.
    pub client: IdentityFiles,
}

impl TlsSetup {
    /// Makes and writes everything in `dir`.
    pub fn new(dir: &Path, client_uri: &str) -> Self {
        let ca = TestCa::new("roster test CA");
        let ca_file = ca.write(dir);
        let server = ca.issue(Usage::Server, 1, "").write(dir, "server");
        let client = ca.issue(Usage::Client, 100, client_uri).write(dir, "client");
        Self { ca, ca_file, server, client }
    }

    /// The server's files: client certificates verified against the CA when presented, required when
    /// `client_cert_required`.
    pub fn server_files(&self, client_cert_required: bool) -> ServerTlsFiles {
        ServerTlsFiles { identity: self.server.clone(), client_ca: Some(self.ca_file.clone()), client_cert_required }
    }

    /// A client's files: the CA, and the client certificate when `mutual`.
    pub fn client_files(&self, mutual: bool) -> ClientTlsFiles {
        ClientTlsFiles { ca: self.ca_file.clone(), identity: mutual.then(|| self.client.clone()) }
    }
}
