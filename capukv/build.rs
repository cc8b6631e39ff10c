//! Generates the gRPC code from proto/capukv.proto with a vendored protoc,
//! so no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through PROTOC. Edition 2024 marks set_var
    // unsafe because other threads may read the environment; a build script
    // has no other threads.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc);
    }
    tonic_prost_build::configure().bytes(".").compile_protos(&["proto/capukv.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/capukv.proto");
    Ok(())
}
