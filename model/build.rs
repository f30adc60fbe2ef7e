fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/config.proto");
    // The protobuf and tonic code only with the config channel (feature `channel`).
    if std::env::var_os("CARGO_FEATURE_CHANNEL").is_none() {
        return Ok(());
    }
    // Resource bodies as `Bytes`: a body is shared, not copied, between versions and streams.
    tonic_prost_build::configure()
        .bytes(".gatehouse.config.v1.Resource.body")
        .compile_protos(&["proto/config.proto"], &["proto"])?;
    Ok(())
}
