//! Message sizes, written once: the budget of every answer that comes in parts, and the size limit of requests.
//!
//! Answers that can grow without bound (a feed snapshot, a `ListProducers` listing, a collector's `GetStatus`) are
//! cut into parts of at most [`PAGE_BYTES`] of encoded entries, so no message nears gRPC's 4 MiB default
//! limit, which every client (tonic, grpcio, grpcurl) applies to what it receives, whatever the entries hold.
//!
//! Requests above the message size limit are answered `RESOURCE_EXHAUSTED`, naming both sizes.
//!
//! gRPC's status code table gives `RESOURCE_EXHAUSTED` for a message larger than the receiver's limit, and that is
//! what grpc-go, grpc-java and the C core send; tonic answers `OUT_OF_RANGE` instead. Clients act on the code
//! (`OUT_OF_RANGE` reads as "a field's value is out of range"), so every roster server puts the standard code back
//! with this layer, written once here and added by [`crate::transport::ServerTransport`]. Only tonic's own size error is touched: every other status passes as is.

use http::Response;
use tonic::{Code, Status, body::Body};
use tower::util::MapResponseLayer;

/// The largest request either server decodes: gRPC's default. roster's largest real request (a registration
/// with the most labels) is a few tens of KiB.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The most encoded bytes of entries in one part of an answer sent in parts: a feed chunk's producers (S2), a
/// `ListProducers` page, a `GetStatus` page. A quarter of gRPC's 4 MiB default message limit: the fields around
/// the entries are small, so every part stays far below the limit every client applies by default.
pub const PAGE_BYTES: usize = 1 << 20;

/// The encoded size of one entry of a repeated message field numbered 1 to 15, whose message encodes to
/// `message_len` bytes: a one-byte key, the length as a varint, the message (protobuf encoding spec, "Message
/// Structure"). Exact: the feed's chunk encoding relies on it.
pub fn entry_len(message_len: usize) -> usize {
    1 + prost::length_delimiter_len(message_len) + message_len
}

/// As [`entry_len`], for a field numbered 16 to 2047, whose key takes two bytes (`GetStatusResponse.producers`
/// is field 16).
pub fn entry_len_wide_key(message_len: usize) -> usize {
    entry_len(message_len) + 1
}

/// How many of the leading entries, of encoded sizes `entry_lens` (see [`entry_len`]), fit in `max_bytes`. At
/// least one when there is one, even a larger one, so that a listing always moves forward.
pub fn fitting(entry_lens: impl IntoIterator<Item = usize>, max_bytes: usize) -> usize {
    let mut bytes = 0usize;
    let mut count = 0;
    for len in entry_lens {
        bytes = bytes.saturating_add(len);
        if count > 0 && bytes > max_bytes {
            break;
        }
        count += 1;
    }
    count
}

/// Cuts one page of a listing sent in pages (`ListProducers`, `GetStatus`) at [`PAGE_BYTES`]: keeps the leading
/// entries that fit (at least one; `entry_len` sizes an entry from its message's encoded length, see
/// [`entry_len`]), and returns the key the next page starts after: the last one kept, when the cut or `more`
/// (entries beyond `page` that the page size left out) leaves something for later. A short page is therefore
/// never the end; only `None` is.
pub fn cut_page<K: Copy, M: prost::Message>(
    page: &mut Vec<(K, M)>,
    more: bool,
    entry_len: fn(usize) -> usize,
) -> Option<K> {
    let fit = fitting(page.iter().map(|(_, m)| entry_len(m.encoded_len())), PAGE_BYTES);
    let next_after = (fit < page.len() || more).then(|| page.get(fit.checked_sub(1)?).map(|(k, _)| *k)).flatten();
    page.truncate(fit);
    next_after
}

/// The layer, added by [`crate::transport::ServerTransport`].
pub(crate) fn layer() -> MapResponseLayer<fn(Response<Body>) -> Response<Body>> {
    MapResponseLayer::new(resource_exhausted_for_oversize as fn(Response<Body>) -> Response<Body>)
}

/// Rewrites tonic's "decoded message length too large" `OUT_OF_RANGE` into `RESOURCE_EXHAUSTED`.
fn resource_exhausted_for_oversize(mut response: Response<Body>) -> Response<Body> {
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
    fn fitting_takes_what_fits_and_always_one() {
        assert_eq!(fitting([], 10), 0);
        assert_eq!(fitting([50], 10), 1, "one entry larger than the budget still moves the listing on");
        assert_eq!(fitting([4, 4, 4], 10), 2);
        assert_eq!(fitting([5, 5, 5], 10), 2, "exactly the budget fits");
        assert_eq!(fitting([1; 100], PAGE_BYTES), 100);
        assert_eq!(entry_len(100), 102);
        assert_eq!(entry_len(200), 203);
    }

    #[test]
    fn a_page_is_cut_by_bytes_and_says_where_the_next_starts() {
        // Three entries of 600 KiB: two do not fit in 1 MiB, so the page holds one and continues after it.
        let big = |n: u32| (n, crate::pb::ProducerStatus { last_error: "x".repeat(600 << 10), ..Default::default() });
        let mut page = vec![big(1), big(2), big(3)];
        assert_eq!(cut_page(&mut page, false, entry_len_wide_key), Some(1));
        assert_eq!(page.len(), 1);
        // A page that fits is kept whole; it is the end only when nothing beyond it was left out.
        let small = |n: u32| (n, crate::pb::ProducerStatus::default());
        let mut page = vec![small(1), small(2)];
        assert_eq!(cut_page(&mut page, true, entry_len_wide_key), Some(2));
        assert_eq!(cut_page(&mut page, false, entry_len_wide_key), None);
        assert_eq!(page.len(), 2);
        let mut empty: Vec<(u32, crate::pb::ProducerStatus)> = Vec::new();
        assert_eq!(cut_page(&mut empty, false, entry_len), None);
    }

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
