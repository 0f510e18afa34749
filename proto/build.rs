//! Generates the candles.v1 Rust code from `candles/v1/candles.proto`.
//!
//! Uses `$PROTOC` when set, else the vendored protoc, so `cargo build` needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // `set_var` is `unsafe` in edition 2024 because of other threads; a build script has none.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("candles_descriptor.bin"))
        .compile_protos(&["candles/v1/candles.proto"], &["."])?;
    println!("cargo:rerun-if-changed=candles/v1/candles.proto");
    Ok(())
}
