//! Compiles `proto/palisade.proto` with the pure-Rust `protox` compiler and
//! generates prost messages and the tonic service; no system `protoc` needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/palisade.proto");
    let fds = protox::compile(["proto/palisade.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
