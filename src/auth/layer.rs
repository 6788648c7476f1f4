//! [`AuthLayer`]: the one tower layer that authenticates every call to a roster server and checks the method table.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use super::{AuthError, Principal, certificate, methods, tokens::TokenFile};

/// Whether server reflection needs a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reflection {
    /// Any authenticated caller may use reflection (the default): an unauthenticated scanner learns nothing, not
    /// even which services run; `grpcurl -H 'authorization: Bearer …'` sends the token to reflection too.
    #[default]
    Authenticated,
    /// Anyone may use reflection: for tools that cannot send credentials to it. It shows the `roster.v1` schema,
    /// which is public, and nothing of the registry.
    Open,
}

/// Who may call: everyone (authentication off), or the holders of the credentials it accepts.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    Off,
    On { tokens: Option<TokenFile>, reflection: Reflection },
}

impl Authenticator {
    /// Authentication off: every call is made by [`Principal::Anyone`]. For a server on loopback, or one started
    /// with `--insecure`.
    pub fn off() -> Self {
        Self { mode: Mode::Off }
    }

    /// Authentication on: a call must carry a bearer token listed in `tokens` (if given) or a client certificate
    /// verified by the TLS layer; health is always open, reflection as `reflection` says.
    pub fn on(tokens: Option<TokenFile>, reflection: Reflection) -> Self {
        Self { mode: Mode::On { tokens, reflection } }
    }

    /// Whether callers must authenticate.
    pub fn is_on(&self) -> bool {
        matches!(self.mode, Mode::On { .. })
    }

    /// The token file it accepts tokens from, if any: its owner keeps it current ([`TokenFile::watch`]).
    pub fn tokens(&self) -> Option<&TokenFile> {
        match &self.mode {
            Mode::On { tokens, .. } => tokens.as_ref(),
            Mode::Off => None,
        }
    }

    /// The caller of a request to `path` with these headers, over a connection whose client presented
    /// `client_certificate` (the leaf, DER, verified by the TLS layer), if it may call `path` at all. A bearer token,
    /// when sent, is the credential; otherwise the certificate is.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] when a credential is needed and none is valid; [`AuthError::Denied`] when
    /// the caller's role may not call `path`.
    pub fn admit(
        &self,
        path: &str,
        headers: &HeaderMap,
        client_certificate: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        let Mode::On { tokens, reflection } = &self.mode else { return Ok(Principal::Anyone) };
        if methods::is_open(path) || (methods::is_reflection(path) && *reflection == Reflection::Open) {
            return Ok(Principal::Anyone);
        }
        let principal = match bearer(headers)? {
            Some(token) => {
                let Some(tokens) = tokens else {
                    return Err(AuthError::Unauthenticated(
                        "this server accepts no bearer tokens (it has no --auth-tokens file); use a client \
                         certificate"
                            .to_owned(),
                    ));
                };
                tokens.table().authenticate(token).cloned().ok_or_else(|| {
                    AuthError::Unauthenticated(
                        "the bearer token is not in the server's token file (revoked, or mistyped); ask an operator \
                         for a token (roster auth token)"
                            .to_owned(),
                    )
                })?
            }
            None => match client_certificate {
                Some(der) => certificate::principal_of(der)?,
                None => {
                    return Err(AuthError::Unauthenticated(
                        "no credentials: send a bearer token (authorization: Bearer …, --token-file) or a client \
                         certificate"
                            .to_owned(),
                    ));
                }
            },
        };
        if !methods::is_reflection(path) {
            principal.may_call(path)?;
        }
        Ok(principal)
    }
}

/// The token of an `authorization: Bearer …` header, if one is sent.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else { return Ok(None) };
    let malformed = || {
        AuthError::Unauthenticated("the authorization header is not \"Bearer <token>\"; send the token so".to_owned())
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(Some(token))
}

/// The layer: authenticates each call with its [`Authenticator`], refuses it (`UNAUTHENTICATED`,
/// `PERMISSION_DENIED`) before any handler runs, or passes it on with the [`Principal`] in its extensions.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    /// The layer of `authenticator`.
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator: Arc::new(authenticator) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, authenticator: Arc::clone(&self.authenticator) }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, B, ResB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AuthFuture<S::Future, Response<ResB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The certificates a TLS client presented and the TLS layer verified (leaf first), from the connection's
        // information tonic puts into every request.
        let certificates =
            req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().and_then(TlsConnectInfo::peer_certs);
        let leaf = certificates.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        match self.authenticator.admit(req.uri().path(), req.headers(), leaf) {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                AuthFuture::Admitted { inner: self.inner.call(req) }
            }
            Err(refused) => AuthFuture::Refused { response: Some(tonic::Status::from(refused).into_http()) },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`AuthService`]: the inner service's, or the refusal.
    #[project = AuthFutureProj]
    pub enum AuthFuture<F, R> {
        /// The call was admitted.
        Admitted { #[pin] inner: F },
        /// The call was refused with this response.
        Refused { response: Option<R> },
    }
}

impl<F, R, E> Future for AuthFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthFutureProj::Admitted { inner } => inner.poll(cx),
            AuthFutureProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("a refused call's future is polled once to completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::{
        Role,
        tokens::{entry_line, new_token},
    };

    fn with_token(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn authenticator(dir: &Path, lines: &[String], reflection: Reflection) -> Authenticator {
        let path = dir.join("tokens");
        std::fs::write(&path, lines.join("\n")).unwrap();
        Authenticator::on(Some(TokenFile::load(path).unwrap()), reflection)
    }

    #[test]
    fn a_token_is_admitted_by_its_role_and_refused_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let reader = new_token();
        let auth = authenticator(dir.path(), &[entry_line(Role::Reader, Some("dash"), &reader)], Reflection::default());
        let admitted = auth.admit(methods::LIST_PRODUCERS, &with_token(&reader), None).unwrap();
        assert_eq!(admitted, Principal::Reader { name: "dash".into() });

        let denied = auth.admit(methods::SET_PRODUCER_PIN, &with_token(&reader), None).unwrap_err();
        let status = tonic::Status::from(denied);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "reader \"dash\" may not call /roster.v1.Registry/SetProducerPin");

        for headers in [HeaderMap::new(), with_token(&new_token())] {
            let status = tonic::Status::from(auth.admit(methods::LIST_PRODUCERS, &headers, None).unwrap_err());
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        }
        let mut basic = HeaderMap::new();
        basic.insert(http::header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        let status = tonic::Status::from(auth.admit(methods::LIST_PRODUCERS, &basic, None).unwrap_err());
        assert!(status.message().contains("Bearer <token>"), "{status:?}");
    }

    #[test]
    fn health_is_open_and_reflection_follows_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let reflect = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        let headers = HeaderMap::new();
        let guarded = authenticator(dir.path(), &[], Reflection::Authenticated);
        assert_eq!(guarded.admit("/grpc.health.v1.Health/Check", &headers, None), Ok(Principal::Anyone));
        assert!(matches!(guarded.admit(reflect, &headers, None), Err(AuthError::Unauthenticated(_))));
        let open = authenticator(dir.path(), &[], Reflection::Open);
        assert_eq!(open.admit(reflect, &headers, None), Ok(Principal::Anyone));
        assert!(open.admit(methods::LIST_COLLECTORS, &headers, None).is_err());

        let collector = new_token();
        let id = uuid::Uuid::from_u128(3).to_string();
        let any_role =
            authenticator(dir.path(), &[entry_line(Role::Collector, Some(&id), &collector)], Reflection::Authenticated);
        assert!(any_role.admit(reflect, &with_token(&collector), None).is_ok(), "any authenticated caller reflects");
    }

    #[test]
    fn a_client_certificate_is_the_credential_when_no_token_is_sent() {
        let id = uuid::Uuid::from_u128(4);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let uri = rcgen::string::Ia5String::try_from(format!("roster://collector/{id}")).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
        let der = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().der().to_vec();
        let certificates_only = Authenticator::on(None, Reflection::Authenticated);
        let admitted = certificates_only.admit(methods::WATCH, &HeaderMap::new(), Some(&der)).unwrap();
        assert_eq!(admitted, Principal::Collector(crate::domain::CollectorId(id)));
        let denied = certificates_only.admit(methods::LIST_PRODUCERS, &HeaderMap::new(), Some(&der)).unwrap_err();
        assert!(matches!(denied, AuthError::Denied { .. }), "{denied}");
        let token = certificates_only.admit(methods::WATCH, &with_token("roster_x"), Some(&der)).unwrap_err();
        assert!(token.to_string().contains("accepts no bearer tokens"), "a token sent is the credential: {token}");
    }

    #[test]
    fn with_authentication_off_everyone_may_call_everything() {
        let off = Authenticator::off();
        assert!(!off.is_on());
        assert_eq!(off.admit(methods::FORGET_COLLECTOR, &HeaderMap::new(), None), Ok(Principal::Anyone));
    }
}
