//! Generates the tonic clients and servers from `proto/appliance.proto`
//! (the node API) and `proto/management.proto` (the management plane).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/appliance.proto");
    println!("cargo:rerun-if-changed=proto/management.proto");
    tonic_prost_build::configure()
        // appliancectl prints replies as JSON with `--output json`.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_protos(
            &["proto/appliance.proto", "proto/management.proto"],
            &["proto"],
        )?;
    Ok(())
}
