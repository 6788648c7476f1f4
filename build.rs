//! Compiles `proto/roster/v1/*.proto` with protox (pure Rust: no system `protoc`), generates the prost messages
//! and tonic clients and servers, and writes the encoded descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> =
        fs::read_dir("proto/roster/v1")?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|ext| ext == "proto"));
    files.sort();

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto/roster/v1");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("roster_descriptor.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        // BTreeMap keeps map fields ordered, so a message's encoding is deterministic (the snapshot digest and
        // "unchanged entry" comparisons rely on it).
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
