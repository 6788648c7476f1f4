//! A client certificate's roster identity: the URI SAN `roster://ROLE[/BINDING]` of the leaf certificate the TLS
//! layer verified ([`principal_of`]). The scheme (see `docs/SECURITY.md`):
//!
//! | URI SAN | principal |
//! |---|---|
//! | `roster://operator/<name>` | an operator, named in the logs |
//! | `roster://reader/<name>` | a reader |
//! | `roster://collector/<uuid>` | the collector with that id, and no other |
//! | `roster://producer` | a registrant of any producer id (no pins) |
//! | `roster://producer/<uuid>[,<uuid>…]` or `roster://producer/<prefix>*` | a registrant of those ids only |
//!
//! A URI SAN rather than the subject's common name: SANs are what certificate tooling (cert-manager, SPIFFE,
//! rcgen, `openssl req -addext`) sets per identity, a URI has room for a role and a binding, and other SANs (the
//! host's DNS name) can sit beside it. Only the certificate's validity and chain are the TLS layer's business;
//! this module trusts what it verified and reads the name.

use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer as _};

use super::{AuthError, Principal};

/// The principal the leaf certificate `der` names in its one `roster://` URI SAN.
///
/// # Errors
/// [`AuthError::Unauthenticated`] when the certificate cannot be read, names no roster identity, names more than
/// one, or names a malformed one.
pub fn principal_of(der: &[u8]) -> Result<Principal, AuthError> {
    let refuse = |why: String| AuthError::Unauthenticated(format!("the client certificate {why}"));
    let (_, certificate) = X509Certificate::from_der(der).map_err(|e| refuse(format!("cannot be read ({e})")))?;
    let names = certificate
        .subject_alternative_name()
        .map_err(|e| refuse(format!("has an unreadable subjectAltName ({e})")))?
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    let mut found = None;
    for name in names {
        let GeneralName::URI(uri) = name else { continue };
        let Some(principal) =
            Principal::from_uri(uri).map_err(|e| refuse(format!("names a malformed roster identity: {e}")))?
        else {
            continue;
        };
        if found.is_some() {
            return Err(refuse("names more than one roster identity (URI SANs roster://…); give it one".to_owned()));
        }
        found = Some(principal);
    }
    found.ok_or_else(|| {
        refuse(
            "names no roster identity: add a URI SAN such as roster://collector/<id> or roster://operator/<name> \
             (docs/SECURITY.md)"
                .to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, SanType, string::Ia5String};

    use super::*;
    use crate::{auth::ProducerScope, domain::CollectorId};

    fn certificate(sans: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
        for uri in sans {
            params.subject_alt_names.push(SanType::URI(Ia5String::try_from(*uri).unwrap()));
        }
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn the_roster_uri_san_names_the_principal() {
        let id = CollectorId(uuid::Uuid::from_u128(7));
        let der = certificate(&["spiffe://example.org/ns/x", &format!("roster://collector/{id}")]);
        assert_eq!(principal_of(&der), Ok(Principal::Collector(id)));
        let der = certificate(&["roster://producer/0b9d*"]);
        assert_eq!(principal_of(&der), Ok(Principal::Producer(ProducerScope::Prefix("0b9d".into()))));
    }

    #[test]
    fn a_certificate_without_exactly_one_good_identity_is_refused() {
        let cases = [
            (certificate(&[]), "names no roster identity"),
            (certificate(&["roster://reader/a", "roster://operator/b"]), "more than one roster identity"),
            (certificate(&["roster://collector/not-a-uuid"]), "malformed roster identity"),
            (b"not a certificate".to_vec(), "cannot be read"),
        ];
        for (der, expected) in cases {
            let e = principal_of(&der).unwrap_err();
            assert_eq!(tonic::Status::from(e.clone()).code(), tonic::Code::Unauthenticated);
            assert!(e.to_string().starts_with("the client certificate ") && e.to_string().contains(expected), "{e}");
        }
    }
}
