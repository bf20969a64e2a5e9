//! `lazyctl unpack IMAGE DIR`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lazy_convert::unpack_image;
use lazy_image::ImageStore;
use lazy_oci::ImageLocation;

use crate::registry_args::RegistryArgs;
use crate::size::human;

/// Write the root filesystem of a lazy image into a directory (no FUSE needed).
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The lazy image (REGISTRY/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]).
    #[arg(value_name = "IMAGE")]
    pub image: ImageLocation,

    /// Target directory; created if absent, must be empty if present.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Registry connection options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Downloads every layer (verified) and applies them in order.
pub async fn run(args: UnpackArgs) -> anyhow::Result<()> {
    let client = args.registry.client()?;
    let store = ImageStore::open(&args.image, &client)
        .with_context(|| format!("opening {}", args.image))?;
    let done = unpack_image(&store, &args.image.to_string(), &args.dir)
        .await
        .with_context(|| format!("unpacking {} into {}", args.image, args.dir.display()))?;
    let bytes: u64 = done.layers.iter().map(|l| l.stats.file_bytes).sum();
    eprintln!(
        "unpacked {} ({} layers, {} of files) into {}",
        args.image,
        done.layers.len(),
        human(bytes),
        args.dir.display()
    );
    Ok(())
}
