//! Generates the tonic client and server from `proto/appliance.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/appliance.proto");
    tonic_prost_build::configure().compile_protos(&["proto/appliance.proto"], &["proto"])?;
    Ok(())
}
