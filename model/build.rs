fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/config.proto");
    tonic_prost_build::configure().compile_protos(&["proto/config.proto"], &["proto"])?;
    Ok(())
}
