//! Generates the tonic client and server from `proto/appliance.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/appliance.proto");
    tonic_prost_build::configure()
        // appliancectl prints replies as JSON with `--output json`.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_protos(&["proto/appliance.proto"], &["proto"])?;
    Ok(())
}
