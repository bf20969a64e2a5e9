//! `lazyctl inspect IMAGE`.

use anyhow::Context;
use clap::Args;
use lazy_format::LayerStats;
use lazy_image::{ImageInspection, ImageStore, inspect_image};
use lazy_oci::ImageLocation;

use crate::convert::percent;
use crate::progress::short;
use crate::registry_args::RegistryArgs;
use crate::size::human;

/// Show the layers of a lazy image: entries, files, chunks, metadata and data bytes.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The lazy image (REGISTRY/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]).
    #[arg(value_name = "IMAGE")]
    pub image: ImageLocation,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Registry connection options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Reads each layer's metadata (one range request per layer) and prints counts.
pub async fn run(args: InspectArgs) -> anyhow::Result<()> {
    let client = args.registry.client()?;
    let store = ImageStore::open(&args.image, &client)
        .with_context(|| format!("opening {}", args.image))?;
    let inspection = inspect_image(&store, &args.image.to_string())
        .await
        .with_context(|| format!("inspecting {}", args.image))?;
    if args.json {
        let totals = totals(&inspection);
        let mut value = serde_json::to_value(&inspection)?;
        value["totals"] = serde_json::to_value(totals)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_table(&inspection);
    }
    Ok(())
}

fn totals(inspection: &ImageInspection) -> LayerStats {
    let mut t = LayerStats::default();
    for l in &inspection.layers {
        t.entries += l.stats.entries;
        t.files += l.stats.files;
        t.chunk_refs += l.stats.chunk_refs;
        t.unique_chunks += l.stats.unique_chunks;
        t.file_bytes += l.stats.file_bytes;
        t.chunk_bytes += l.stats.chunk_bytes;
        t.data_bytes += l.stats.data_bytes;
    }
    t
}

/// `a / b`, or 1 when `b` is 0 (an empty layer neither gains nor loses).
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

fn print_table(inspection: &ImageInspection) {
    println!("IMAGE   {}", inspection.image);
    println!("DIGEST  {}", inspection.manifest_digest);
    println!();
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>8} {:>10} {:>6} {:>10} {:>10} {:>6}",
        "LAYER",
        "ENTRIES",
        "FILES",
        "CHUNKS",
        "UNIQUE",
        "METADATA",
        "META%",
        "DATA",
        "CONTENT",
        "DEDUP"
    );
    let row = |name: &str, s: &LayerStats, meta: u64, size: u64| {
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>10} {:>5.2}% {:>10} {:>10} {:>5.2}x",
            name,
            s.entries,
            s.files,
            s.chunk_refs,
            s.unique_chunks,
            human(meta),
            percent(meta, size),
            human(s.data_bytes),
            human(s.file_bytes),
            ratio(s.file_bytes, s.chunk_bytes),
        );
    };
    for l in &inspection.layers {
        row(short(&l.digest), &l.stats, l.meta_bytes, l.size);
    }
    let meta: u64 = inspection.layers.iter().map(|l| l.meta_bytes).sum();
    let size: u64 = inspection.layers.iter().map(|l| l.size).sum();
    row("TOTAL", &totals(inspection), meta, size);
}
