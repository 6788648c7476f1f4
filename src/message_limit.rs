//! Requests above the message size limit are answered `RESOURCE_EXHAUSTED`, naming both sizes.
//!
//! gRPC's status code table gives `RESOURCE_EXHAUSTED` for a message larger than the receiver's limit, and that is
//! what grpc-go, grpc-java and the C core send; tonic answers `OUT_OF_RANGE` instead. Clients act on the code
//! (`OUT_OF_RANGE` reads as "a field's value is out of range"), so both roster servers put the standard code back
//! with this layer, written once here. Only tonic's own size error is touched: every other status passes as is.

use http::Response;
use tonic::{Code, Status, body::Body};
use tower::util::MapResponseLayer;

/// The largest request either server decodes: gRPC's default. roster's largest real request (a registration
/// with the most labels) is a few tens of KiB.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The layer; add it with `tonic::transport::Server::builder().layer(message_limit::layer())`.
pub fn layer() -> MapResponseLayer<fn(Response<Body>) -> Response<Body>> {
    MapResponseLayer::new(resource_exhausted_for_oversize as fn(Response<Body>) -> Response<Body>)
}

/// Rewrites tonic's "decoded message length too large" `OUT_OF_RANGE` into `RESOURCE_EXHAUSTED`.
pub fn resource_exhausted_for_oversize(mut response: Response<Body>) -> Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else { return response };
    if status.code() != Code::OutOfRange || !status.message().contains("decoded message length too large") {
        return response;
    }
    let detail = status.message().split("too large: ").nth(1).unwrap_or(status.message());
    let fixed = Status::resource_exhausted(format!("request message too large ({detail}); send a smaller one"));
    let headers = response.headers_mut();
    headers.remove("grpc-message");
    if fixed.add_header(headers).is_err() {
        // The message is plain ASCII, so this cannot fail; if it did, the original answer stands.
        return response;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_size_error_is_rewritten() {
        let oversize = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        let fixed = resource_exhausted_for_oversize(oversize.into_http());
        let status = Status::from_header_map(fixed.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "request message too large (found 5000000 bytes, the limit is: 4194304 bytes); send a smaller one"
        );

        for other in [Status::out_of_range("page 9 is past the end"), Status::invalid_argument("x: bad")] {
            let kept = resource_exhausted_for_oversize(other.clone().into_http());
            let status = Status::from_header_map(kept.headers()).unwrap();
            assert_eq!((status.code(), status.message()), (other.code(), other.message()));
        }
    }
}
