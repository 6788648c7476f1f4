//! Who is calling a roster server, and what it may do (issue 15; the threat model is `docs/SECURITY.md`).
//!
//! Lives in the library, not in roster-server, because both ends need it: the server authenticates and authorizes
//! ([`AuthLayer`], [`Principal`]), the CLI makes token-file entries ([`tokens::new_token`]), and every client sends
//! its token ([`CallCredentials`]).
//!
//! | module | owns |
//! |---|---|
//! | [`certificate`] | a client certificate's identity: its `roster://ROLE/BINDING` URI SAN |
//! | [`methods`] | the one table of `roster.v1` method → roles, and the paths open to anyone (health) |
//! | [`tokens`] | bearer tokens: making one, hashing it (SHA-256), the token file's format, its reload |
//! | `layer` | [`AuthLayer`]: the one tower layer that authenticates every call and checks the table |
//! | `credentials` | [`CallCredentials`]: a client's token, read from a file and re-read when it changes |
//!
//! Authorization happens in two steps, each written once. The layer sees the method path: it authenticates the
//! caller (a bearer token, or a client certificate verified by the TLS layer), checks [`methods::roles_of`], and
//! puts the [`Principal`] into the request's extensions. What the path cannot show (which collector a `Watch` is
//! for, which producer a call touches) is checked by the handler through [`Principal::may`], the one function
//! that knows the bindings.

pub mod certificate;
mod credentials;
mod layer;
pub mod methods;
pub mod tokens;

use std::fmt;

pub use credentials::{AuthChannel, CallCredentials};
pub use layer::{AuthLayer, AuthService, Authenticator, Reflection};

use crate::domain::{CollectorId, FieldError, ProducerId};

/// What a caller is allowed to be: the roles of `docs/SECURITY.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, pins and deregistering anything included.
    Operator,
    /// One collector: `Watch` and `ReportApplied` as its own id only.
    Collector,
    /// A registrant: register, renew and deregister producers (only those it is bound to), never a pin.
    Producer,
    /// Reads: `List*`, `Get*`, and observing a feed.
    Reader,
}

impl Role {
    /// Every role, in the order of the table in `docs/SECURITY.md`.
    pub const ALL: [Role; 4] = [Role::Operator, Role::Collector, Role::Producer, Role::Reader];

    /// The role's name, as written in a token file and a certificate's URI SAN.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Collector => "collector",
            Role::Producer => "producer",
            Role::Reader => "reader",
        }
    }

    /// Parses a role's name (as [`Role::as_str`] writes it).
    ///
    /// # Errors
    /// A [`FieldError`] on `field` naming the roles there are.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldError> {
        Role::ALL.into_iter().find(|r| r.as_str() == value).ok_or_else(|| {
            FieldError::new(field, format!("{value:?} is not a role (use operator, collector, producer or reader)"))
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which producer ids a producer credential may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducerScope {
    /// Any id (still no pins).
    Any,
    /// These ids only.
    Ids(Vec<ProducerId>),
    /// Ids whose text (lowercase, hyphenated) starts with this prefix: a fleet that names its producers
    /// `0b9d2a1c-…` gets one credential for all of them.
    Prefix(String),
}

impl ProducerScope {
    fn covers(&self, id: ProducerId) -> bool {
        match self {
            ProducerScope::Any => true,
            ProducerScope::Ids(ids) => ids.contains(&id),
            ProducerScope::Prefix(prefix) => id.to_string().starts_with(prefix.as_str()),
        }
    }
}

/// An authenticated caller: its role and what it is bound to. The layer puts one into every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off (a loopback server, or `--insecure`): every caller may do everything.
    Anyone,
    /// An operator, named for the logs.
    Operator {
        /// Its name (a certificate's, or `token <fingerprint>`).
        name: String,
    },
    /// The collector with this id.
    Collector(CollectorId),
    /// A registrant of producers.
    Producer(ProducerScope),
    /// A reader, named for the logs.
    Reader {
        /// Its name (a certificate's, or `token <fingerprint>`).
        name: String,
    },
}

/// What a call acts on, as far as the method path cannot tell: checked by [`Principal::may`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Following a collector's feed (`Watch`); `observe_only` changes nothing.
    Feed {
        /// The collector.
        collector: CollectorId,
        /// `WatchRequest.observe_only`.
        observe_only: bool,
    },
    /// Reporting as a collector (`ReportApplied`).
    Report(CollectorId),
    /// Registering (or renewing) a producer, with a registrant pin or not.
    Register {
        /// The producer.
        producer: ProducerId,
        /// Whether the registration asks for a pin.
        pinned: bool,
    },
    /// Deregistering a producer.
    Deregister(ProducerId),
}

/// Why a call was refused: made a status by [`From<AuthError> for tonic::Status`] (the server's error mapping
/// wraps it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one this server does not accept.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller asked for what its role may not do.
    #[error("{principal} may not call {method}{why}")]
    Denied {
        /// The caller, with its role.
        principal: String,
        /// The method, or what the call acts on.
        method: String,
        /// The binding that refused it, if any (starts with `: `).
        why: String,
    },
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            AuthError::Denied { .. } => tonic::Status::permission_denied(message),
        }
    }
}

impl Principal {
    /// The caller's role; `None` for [`Principal::Anyone`].
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Anyone => None,
            Principal::Operator { .. } => Some(Role::Operator),
            Principal::Collector(_) => Some(Role::Collector),
            Principal::Producer(_) => Some(Role::Producer),
            Principal::Reader { .. } => Some(Role::Reader),
        }
    }

    /// Whether this caller may call `method` (a path such as `/roster.v1.Registry/ListProducers`), by the one
    /// table ([`methods::roles_of`]). The bindings are checked by [`Principal::may`].
    ///
    /// # Errors
    /// [`AuthError::Denied`] naming the role and the method.
    pub fn may_call(&self, method: &str) -> Result<(), AuthError> {
        let allowed = match self.role() {
            None | Some(Role::Operator) => true,
            Some(role) => methods::roles_of(method).is_some_and(|roles| roles.contains(&role)),
        };
        if allowed { Ok(()) } else { Err(self.denied(method, String::new())) }
    }

    /// Whether this caller may act on `target`: the one check of a credential's binding (a collector's id, a
    /// producer's ids, no pins for a producer, observing only for a reader). The handlers call it with what the
    /// request body names, after the layer checked the method.
    ///
    /// # Errors
    /// [`AuthError::Denied`] naming the role, the call and why.
    pub fn may(&self, target: Target) -> Result<(), AuthError> {
        let refusal = match (self, target) {
            (Principal::Anyone | Principal::Operator { .. }, _) => None,
            (Principal::Collector(own), Target::Feed { collector, .. } | Target::Report(collector)) => {
                (*own != collector).then(|| format!(": it is bound to collector {own}, not {collector}"))
            }
            (Principal::Reader { .. }, Target::Feed { observe_only: true, .. }) => None,
            (Principal::Reader { .. }, Target::Feed { observe_only: false, .. }) => {
                Some(": a reader may only observe a feed (observe_only)".to_owned())
            }
            (Principal::Producer(_), Target::Register { pinned: true, .. }) => {
                Some(": a producer credential may not pin; ask an operator (roster producers pin)".to_owned())
            }
            (Principal::Producer(scope), Target::Register { producer, .. } | Target::Deregister(producer)) => {
                (!scope.covers(producer)).then(|| format!(": producer {producer} is outside its binding"))
            }
            _ => Some(String::new()),
        };
        match refusal {
            None => Ok(()),
            Some(why) => Err(self.denied(target.call(), why)),
        }
    }

    fn denied(&self, method: &str, why: String) -> AuthError {
        AuthError::Denied { principal: self.to_string(), method: method.to_owned(), why }
    }

    /// The identity a client certificate's URI SAN names (the scheme of `docs/SECURITY.md`):
    /// `roster://operator/<name>`, `roster://reader/<name>`, `roster://collector/<uuid>`, `roster://producer`
    /// (any id), `roster://producer/<uuid>` or `roster://producer/<prefix>*`. `None` when the URI is not a roster
    /// identity at all (a certificate may carry other SANs).
    ///
    /// # Errors
    /// A [`FieldError`] when the URI is a `roster://` identity that is malformed.
    pub fn from_uri(uri: &str) -> Result<Option<Self>, FieldError> {
        let Some(rest) = uri.strip_prefix("roster://") else { return Ok(None) };
        let (role, binding) = match rest.split_once('/') {
            Some((role, binding)) => (role, Some(binding)),
            None => (rest, None),
        };
        let role = Role::parse_field("URI SAN", role)?;
        Self::bind(role, binding, "URI SAN").map(Some)
    }

    /// A principal of `role` with `binding` (the text after `:` in a token file, after the role in a URI SAN):
    /// required for a collector (its id), optional for a producer (comma-separated ids, or one prefix ending in
    /// `*`), a name for an operator or reader.
    ///
    /// # Errors
    /// A [`FieldError`] on `field` when the binding is missing or malformed.
    pub fn bind(role: Role, binding: Option<&str>, field: &str) -> Result<Self, FieldError> {
        let binding = binding.filter(|b| !b.is_empty());
        match role {
            Role::Operator => Ok(Principal::Operator { name: binding.unwrap_or("operator").to_owned() }),
            Role::Reader => Ok(Principal::Reader { name: binding.unwrap_or("reader").to_owned() }),
            Role::Collector => {
                let id = binding.ok_or_else(|| {
                    FieldError::new(field, "a collector credential names its collector id (collector:<uuid>)")
                })?;
                CollectorId::parse_field(field, id).map(Principal::Collector)
            }
            Role::Producer => Ok(Principal::Producer(match binding {
                None => ProducerScope::Any,
                Some(b) => match b.strip_suffix('*') {
                    Some(prefix) => {
                        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                            return Err(FieldError::new(
                                field,
                                format!("{b:?}: a producer id prefix is hex digits and hyphens, then *"),
                            ));
                        }
                        ProducerScope::Prefix(prefix.to_ascii_lowercase())
                    }
                    None => ProducerScope::Ids(
                        b.split(',').map(|id| ProducerId::parse_field(field, id.trim())).collect::<Result<_, _>>()?,
                    ),
                },
            })),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anyone => f.write_str("anyone (authentication is off)"),
            Principal::Operator { name } => write!(f, "operator {name:?}"),
            Principal::Reader { name } => write!(f, "reader {name:?}"),
            Principal::Collector(id) => write!(f, "collector {id}"),
            Principal::Producer(ProducerScope::Any) => f.write_str("producer"),
            Principal::Producer(ProducerScope::Ids(ids)) => {
                let ids: Vec<_> = ids.iter().map(ToString::to_string).collect();
                write!(f, "producer [{}]", ids.join(", "))
            }
            Principal::Producer(ProducerScope::Prefix(p)) => write!(f, "producer [{p}*]"),
        }
    }
}

impl Target {
    /// The call this target belongs to, for a refusal's message.
    fn call(self) -> &'static str {
        match self {
            Target::Feed { .. } => methods::WATCH,
            Target::Report(_) => methods::REPORT_APPLIED,
            Target::Register { .. } => methods::REGISTER_PRODUCER,
            Target::Deregister(_) => methods::DEREGISTER_PRODUCER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector(n: u128) -> CollectorId {
        CollectorId(uuid::Uuid::from_u128(n))
    }

    fn producer(n: u128) -> ProducerId {
        ProducerId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_collector_acts_as_its_own_id_only() {
        let own = Principal::Collector(collector(1));
        assert_eq!(own.may(Target::Feed { collector: collector(1), observe_only: false }), Ok(()));
        assert_eq!(own.may(Target::Report(collector(1))), Ok(()));
        let err = own.may(Target::Feed { collector: collector(2), observe_only: true }).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "collector {} may not call /roster.v1.AssignmentFeed/Watch: it is bound to collector {}, not {}",
                collector(1),
                collector(1),
                collector(2)
            )
        );
        assert!(own.may(Target::Report(collector(2))).is_err());
        assert!(own.may(Target::Deregister(producer(1))).is_err(), "a collector registers nothing");
    }

    #[test]
    fn a_producer_touches_only_its_binding_and_never_pins() {
        let ids = Principal::Producer(ProducerScope::Ids(vec![producer(1)]));
        assert_eq!(ids.may(Target::Register { producer: producer(1), pinned: false }), Ok(()));
        assert_eq!(ids.may(Target::Deregister(producer(1))), Ok(()));
        assert!(ids.may(Target::Deregister(producer(2))).is_err());
        let pin = ids.may(Target::Register { producer: producer(1), pinned: true }).unwrap_err();
        assert!(pin.to_string().contains("may not pin"), "{pin}");

        let prefix = Principal::bind(Role::Producer, Some("00000000-0000-0000-0000-00000000000*"), "f").unwrap();
        assert_eq!(prefix.may(Target::Deregister(producer(7))), Ok(()));
        assert!(prefix.may(Target::Deregister(producer(0x10))).is_err());
        let any = Principal::Producer(ProducerScope::Any);
        assert_eq!(any.may(Target::Deregister(producer(0x10))), Ok(()));
        assert!(any.may(Target::Feed { collector: collector(1), observe_only: true }).is_err());
    }

    #[test]
    fn a_reader_only_observes_and_an_operator_does_everything() {
        let reader = Principal::Reader { name: "dash".into() };
        assert_eq!(reader.may(Target::Feed { collector: collector(1), observe_only: true }), Ok(()));
        assert!(reader.may(Target::Feed { collector: collector(1), observe_only: false }).is_err());
        assert!(reader.may(Target::Report(collector(1))).is_err());
        let operator = Principal::Operator { name: "ops".into() };
        for target in [
            Target::Feed { collector: collector(1), observe_only: false },
            Target::Report(collector(2)),
            Target::Register { producer: producer(1), pinned: true },
            Target::Deregister(producer(3)),
        ] {
            assert_eq!(operator.may(target), Ok(()));
            assert_eq!(Principal::Anyone.may(target), Ok(()));
        }
    }

    #[test]
    fn uri_sans_name_roster_identities() {
        let id = collector(5);
        assert_eq!(Principal::from_uri(&format!("roster://collector/{id}")).unwrap(), Some(Principal::Collector(id)));
        assert_eq!(
            Principal::from_uri("roster://operator/alice").unwrap(),
            Some(Principal::Operator { name: "alice".into() })
        );
        assert_eq!(Principal::from_uri("roster://producer").unwrap(), Some(Principal::Producer(ProducerScope::Any)));
        assert_eq!(
            Principal::from_uri("roster://producer/0B9D*").unwrap(),
            Some(Principal::Producer(ProducerScope::Prefix("0b9d".into())))
        );
        assert_eq!(Principal::from_uri("spiffe://example.org/x").unwrap(), None);
        assert!(Principal::from_uri("roster://collector").unwrap_err().to_string().contains("collector id"));
        assert!(Principal::from_uri("roster://admin/x").unwrap_err().to_string().contains("not a role"));
        assert!(Principal::from_uri("roster://producer/zz*").is_err());
    }
}
