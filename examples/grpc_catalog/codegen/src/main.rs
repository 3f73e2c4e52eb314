//! Writes the example's generated code and descriptor set next to `catalog.proto`.

use std::error::Error;
use std::path::Path;

use prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files = protox::compile(["catalog.proto"], [&proto])?;
    // Read by `CacheLayer::grpc_descriptors` for the methods marked NO_SIDE_EFFECTS.
    std::fs::write(proto.join("catalog_descriptor.bin"), files.encode_to_vec())?;
    tonic_prost_build::configure()
        .out_dir(&proto)
        .compile_fds(files)?;
    Ok(())
}
