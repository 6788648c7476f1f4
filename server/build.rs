//! Generates roster-server's own stub of `roster.v1.AssignmentFeed`: the same service, on the same wire, as
//! `roster::pb::assignment_feed_server`, except that its `Watch` stream yields [`wire::WatchFrame`]s through
//! [`wire::FeedCodec`], so a snapshot chunk is encoded straight from the shared snapshot instead of being cloned
//! into a `WatchResponse` first (see `src/wire.rs`). Every message type stays `roster::pb`'s.
//!
//! [`wire::WatchFrame`]: src/wire.rs
//! [`wire::FeedCodec`]: src/wire.rs

use std::{env, path::PathBuf};

const PROTO_ROOT: &str = "../proto";
const FEED_PROTO: &str = "roster/v1/feed.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={PROTO_ROOT}/roster/v1");

    let mut descriptors = protox::compile([PathBuf::from(PROTO_ROOT).join(FEED_PROTO)], [PROTO_ROOT])?;
    // Only the feed's service is generated here; the files it imports are there for their types alone.
    for file in &mut descriptors.file {
        if file.name() != FEED_PROTO {
            file.service.clear();
        }
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_transport(false)
        // Every message is roster::pb's; only the stream's item is ours. prost-build takes the most specific path.
        .extern_path(".roster.v1", "::roster::pb")
        .extern_path(".roster.v1.WatchResponse", "crate::wire::WatchFrame")
        .codec_path("crate::wire::FeedCodec")
        .out_dir(PathBuf::from(env::var("OUT_DIR")?))
        .compile_fds(descriptors)?;
    Ok(())
}
