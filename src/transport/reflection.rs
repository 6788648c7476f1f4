//! Server reflection for roster's gRPC servers, so grpcurl and other tools work without proto files.
//!
//! Both reflection versions are served: v1, and v1alpha, which grpcurl 1.8.6 asks for. Each advertises exactly
//! the services the server runs (both reflection services included), not every service in the descriptors: the
//! `roster.v1` descriptor also defines `roster.v1.Producer`, which only producers serve.

use tonic_reflection::server::{
    Builder,
    v1::{ServerReflection as V1, ServerReflectionServer as V1Server},
    v1alpha::{ServerReflection as V1Alpha, ServerReflectionServer as V1AlphaServer},
};

/// The reflection services' own names.
const REFLECTION_SERVICES: [&str; 2] =
    ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// Builds the v1 and v1alpha reflection services advertising `served` (fully qualified service names) plus
/// both reflection services, with the `roster.v1`, health and reflection descriptors registered.
pub(super) fn services(served: &[&str]) -> (V1Server<impl V1>, V1AlphaServer<impl V1Alpha>) {
    let builder = || {
        let mut builder = Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
        for name in served.iter().chain(REFLECTION_SERVICES.iter()) {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let v1 = builder().build_v1().expect("the embedded descriptor sets are valid");
    let v1alpha = builder().build_v1alpha().expect("the embedded descriptor sets are valid");
    (v1, v1alpha)
}
