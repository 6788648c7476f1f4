//! The one table of which role may call which `roster.v1` method ([`roles_of`]), and the paths open to anyone
//! ([`is_open`]). The auth layer reads it with the path of every call; a method missing from the table is refused
//! to every role but the operator, and a test fails until it is added (every method of every `roster.v1`
//! service, read from the compiled descriptors, against every role).

use super::Role;

/// `roster.v1.Registry/RegisterProducer`.
pub const REGISTER_PRODUCER: &str = "/roster.v1.Registry/RegisterProducer";
/// `roster.v1.Registry/DeregisterProducer`.
pub const DEREGISTER_PRODUCER: &str = "/roster.v1.Registry/DeregisterProducer";
/// `roster.v1.Registry/GetProducer`.
pub const GET_PRODUCER: &str = "/roster.v1.Registry/GetProducer";
/// `roster.v1.Registry/ListProducers`.
pub const LIST_PRODUCERS: &str = "/roster.v1.Registry/ListProducers";
/// `roster.v1.Registry/ListCollectors`.
pub const LIST_COLLECTORS: &str = "/roster.v1.Registry/ListCollectors";
/// `roster.v1.Registry/SetProducerPin`.
pub const SET_PRODUCER_PIN: &str = "/roster.v1.Registry/SetProducerPin";
/// `roster.v1.Registry/ForgetCollector`.
pub const FORGET_COLLECTOR: &str = "/roster.v1.Registry/ForgetCollector";
/// `roster.v1.AssignmentFeed/Watch`.
pub const WATCH: &str = "/roster.v1.AssignmentFeed/Watch";
/// `roster.v1.AssignmentFeed/ReportApplied`.
pub const REPORT_APPLIED: &str = "/roster.v1.AssignmentFeed/ReportApplied";
/// `roster.v1.CollectorStatus/GetStatus` (a collector's status API).
pub const GET_STATUS: &str = "/roster.v1.CollectorStatus/GetStatus";
/// `roster.v1.Producer/Collect` (served by producers, called by collectors).
pub const COLLECT: &str = "/roster.v1.Producer/Collect";

/// The roles that may call `method` (an operator may call anything, listed or not); `None` for a method this
/// table does not know. The bindings of a role (a collector's own id, a producer's ids, no pins) are checked by
/// [`Principal::may`](super::Principal::may) on the request's body.
pub fn roles_of(method: &str) -> Option<&'static [Role]> {
    use Role::{Collector, Operator, Producer, Reader};
    Some(match method {
        REGISTER_PRODUCER | DEREGISTER_PRODUCER => &[Operator, Producer],
        GET_PRODUCER | LIST_PRODUCERS | LIST_COLLECTORS | GET_STATUS => &[Operator, Reader],
        SET_PRODUCER_PIN | FORGET_COLLECTOR => &[Operator],
        // A reader may only observe (observe_only), checked on the body.
        WATCH => &[Operator, Collector, Reader],
        REPORT_APPLIED | COLLECT => &[Operator, Collector],
        _ => return None,
    })
}

/// Whether `path` is open to anyone, credentials or not: `grpc.health.v1.Health`, because probes (Kubernetes'
/// built-in gRPC probe, load balancers) cannot send credentials.
pub fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

/// Whether `path` is server reflection (v1 or v1alpha), which [`Reflection`](super::Reflection) opens or guards.
pub fn is_reflection(path: &str) -> bool {
    path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;

    use super::*;
    use crate::auth::{Principal, ProducerScope};

    /// Every method of every `roster.v1` service, from the descriptors compiled into the library: a new RPC shows
    /// up here whether or not anyone remembered the table.
    fn roster_methods() -> BTreeSet<String> {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = BTreeSet::new();
        for file in set.file.iter().filter(|f| f.package() == "roster.v1") {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!("/roster.v1.{}/{}", service.name(), method.name()));
                }
            }
        }
        methods
    }

    fn principal(role: Role) -> Principal {
        match role {
            Role::Operator => Principal::Operator { name: "o".into() },
            Role::Collector => Principal::Collector(crate::domain::CollectorId(uuid::Uuid::from_u128(1))),
            Role::Producer => Principal::Producer(ProducerScope::Any),
            Role::Reader => Principal::Reader { name: "r".into() },
        }
    }

    #[test]
    fn every_method_of_every_roster_service_is_in_the_table_for_every_role() {
        // (method, operator, collector, producer, reader), stated here apart from the table it checks.
        let expected = [
            ("/roster.v1.Registry/RegisterProducer", [true, false, true, false]),
            ("/roster.v1.Registry/DeregisterProducer", [true, false, true, false]),
            ("/roster.v1.Registry/GetProducer", [true, false, false, true]),
            ("/roster.v1.Registry/ListProducers", [true, false, false, true]),
            ("/roster.v1.Registry/ListCollectors", [true, false, false, true]),
            ("/roster.v1.Registry/SetProducerPin", [true, false, false, false]),
            ("/roster.v1.Registry/ForgetCollector", [true, false, false, false]),
            ("/roster.v1.AssignmentFeed/Watch", [true, true, false, true]),
            ("/roster.v1.AssignmentFeed/ReportApplied", [true, true, false, false]),
            ("/roster.v1.CollectorStatus/GetStatus", [true, false, false, true]),
            ("/roster.v1.Producer/Collect", [true, true, false, false]),
        ];
        let stated: BTreeSet<String> = expected.iter().map(|(m, _)| (*m).to_owned()).collect();
        assert_eq!(roster_methods(), stated, "a roster.v1 method is missing from this test (and so from the table)");
        for (method, allowed) in expected {
            assert!(roles_of(method).is_some(), "{method} is not in the table");
            assert!(!is_open(method) && !is_reflection(method));
            for (role, allowed) in Role::ALL.into_iter().zip(allowed) {
                let answer = principal(role).may_call(method);
                assert_eq!(answer.is_ok(), allowed, "{role} calling {method}: {answer:?}");
                if let Err(e) = answer {
                    assert_eq!(
                        tonic::Status::from(e.clone()).code(),
                        tonic::Code::PermissionDenied,
                        "{role} calling {method}"
                    );
                    assert!(e.to_string().contains(role.as_str()) && e.to_string().contains(method), "{e}");
                }
            }
        }
    }

    #[test]
    fn an_unknown_method_is_refused_to_all_but_the_operator() {
        let unknown = "/roster.v1.Registry/DropEverything";
        assert_eq!(roles_of(unknown), None);
        for role in Role::ALL {
            assert_eq!(principal(role).may_call(unknown).is_ok(), role == Role::Operator, "{role}");
        }
    }

    #[test]
    fn health_is_open_and_reflection_is_recognised() {
        assert!(is_open("/grpc.health.v1.Health/Check") && is_open("/grpc.health.v1.Health/Watch"));
        assert!(!is_open("/grpc.health.v1.HealthX/Check"));
        assert!(is_reflection("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(is_reflection("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
    }
}
