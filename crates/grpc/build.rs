//! Generates the gRPC types from `proto/` with a vendored `protoc`, so a fresh
//! clone builds without system packages.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: a build script is single-threaded, so nothing reads the environment concurrently.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc)
    };
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = [
        "gatehouse/v1/system.proto",
        "gatehouse/v1/auth.proto",
        "gatehouse/v1/directory.proto",
        "gatehouse/v1/keys.proto",
        "gatehouse/v1/vaults.proto",
        "gatehouse/v1/policy.proto",
        "gatehouse/v1/work.proto",
        "gatehouse/v1/records.proto",
    ]
    .map(|p| proto_root.join(p));
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("gatehouse_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .compile_protos(&protos, std::slice::from_ref(&proto_root))?;
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    Ok(())
}
