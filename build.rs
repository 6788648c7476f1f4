//! Compiles `proto/roster/v1/*.proto` with protox (pure Rust: no system `protoc`), generates the prost messages
//! and tonic clients and servers, and writes the encoded descriptor set that server reflection serves.
//!
//! Compiles `proto/prometheus/*.proto` (Prometheus remote-write 1.0, which roster-collector sends) the same way,
//! apart: messages only, and kept out of the reflection descriptor set, which describes `roster.v1` alone.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let files = proto_files("proto/roster/v1")?;
    let descriptors = protox::compile(&files, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("roster_descriptor.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        // BTreeMap keeps map fields ordered, so a message's encoding is deterministic (the snapshot digest and
        // "unchanged entry" comparisons rely on it).
        .btree_map(".")
        .compile_fds(descriptors)?;

    let remote_write = protox::compile(proto_files("proto/prometheus")?, [PROTO_ROOT])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(remote_write)?;
    Ok(())
}

/// The `.proto` files of `dir`, in name order, each watched for changes (and the directory, for new ones).
fn proto_files(dir: &str) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|ext| ext == "proto"));
    files.sort();
    println!("cargo:rerun-if-changed={dir}");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(files)
}
