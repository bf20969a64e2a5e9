//! `lazyctl relayout IMAGE`: rewrite a lazy image so that the chunks its
//! prefetch record reads sit together, in the order they were first read.

use anyhow::{Context, bail};
use clap::Args;
use lazy_convert::relayout_image;
use lazy_format::PrefetchRecord;
use lazy_image::{ImageStore, fetch_lazy_manifest, fetch_prefetch_record, prefetch_tag};
use lazy_oci::{Reference, RegistryClient};

use crate::progress::short;
use crate::record::store_record;
use crate::registry_args::RegistryArgs;
use crate::size::human;

/// Lay a lazy image out by its prefetch record: each layer's recorded
/// chunks move to the front of its blob in the order the recorded runs
/// first read them, so that a start fetches them in a few long range
/// requests, and reads that fetch around themselves bring what comes next.
/// Files and their contents do not change. The new manifest replaces the
/// old one under the same tag, and the record moves with it.
#[derive(Debug, Args)]
#[command(after_help = "EXAMPLE:
  lazyctl record localhost:5000/r-base:lazy -- Rscript -e 'sessionInfo()'
  lazyctl relayout localhost:5000/r-base:lazy")]
pub struct RelayoutArgs {
    /// Lazy image in a registry, with a prefetch record (`lazyctl record`).
    pub image: String,
    /// Registry options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Relays out the image by its stored record.
pub async fn run(args: RelayoutArgs) -> anyhow::Result<()> {
    let registry = args.registry.client()?;
    let reference: Reference = args.image.parse()?;
    let store = ImageStore::Registry {
        client: registry.clone(),
        reference: reference.clone(),
    };
    let manifest = fetch_lazy_manifest(&store, &args.image).await?;
    let record_store = ImageStore::Registry {
        client: registry.clone(),
        reference: reference.with_tag(&prefetch_tag(&manifest.digest)),
    };
    let Some(record) = fetch_prefetch_record(&record_store, &args.image).await? else {
        bail!(
            "{} has no prefetch record to lay it out by; record one first \
             (lazyctl record {} -- COMMAND)",
            args.image,
            args.image
        );
    };
    relayout_and_store(&registry, &args.image, &record).await
}

/// Relays out `image` by `record`, stores the record for the new manifest
/// and prints what moved.
pub async fn relayout_and_store(
    registry: &RegistryClient,
    image: &str,
    record: &PrefetchRecord,
) -> anyhow::Result<()> {
    let store = ImageStore::Registry {
        client: registry.clone(),
        reference: image.parse()?,
    };
    let relaid = relayout_image(&store, image, record)
        .await
        .with_context(|| format!("laying out {image}"))?;
    for (position, layer) in relaid.layers.iter().enumerate() {
        let Some(layer) = layer else { continue };
        let moved = relaid
            .record
            .chunks
            .iter()
            .filter(|(p, _)| *p as usize == position)
            .map(|&(_, i)| u64::from(layer.meta.chunks[i as usize].stored_len))
            .sum::<u64>();
        println!(
            "layer {:>2}  {}  recorded chunks first: {} of {}",
            position + 1,
            short(&layer.digest),
            human(moved),
            human(layer.size),
        );
    }
    let stored = store_record(registry, image, &relaid.record, false).await?;
    println!("laid out {image} by its record; record stored as {stored}");
    println!("{}", relaid.manifest_digest);
    Ok(())
}
