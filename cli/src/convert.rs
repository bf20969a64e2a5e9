//! `lazyctl convert SRC DST`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use lazy_convert::{ConvertOptions, ConvertReport, convert_image};
use lazy_image::ImageStore;
use lazy_oci::ImageLocation;

use crate::daemon_args::DaemonArgs;
use crate::progress::{ConvertBar, short};
use crate::record::{parse_duration, record_command};
use crate::registry_args::RegistryArgs;
use crate::relayout::relayout_and_store;
use crate::size::{human, parse_size};

/// Convert an image into a lazy image.
#[derive(Debug, Args)]
#[command(after_help = "\
IMAGE LOCATIONS:
  REGISTRY/REPO[:TAG|@DIGEST]   an image in a registry, e.g. localhost:5000/r-base:4.4
  oci:DIR[:TAG]                 an OCI image-layout directory (tag defaults to latest)

EXAMPLES:
  lazyctl convert --insecure localhost:5000 localhost:5000/r-base localhost:5000/r-base:lazy
  lazyctl convert oci:./busybox:1.36 oci:./busybox-lazy:1.36
  lazyctl convert --record localhost:5000/r-base localhost:5000/r-base:lazy -- R -e 'q()'

RECORDING AT CONVERSION (--record):
  After converting, the image's entrypoint and cmd (or the command after --)
  runs in a container exactly as `lazyctl record` runs it (lazyfsd must be
  running; the destination must be a registry). The chunks it read become the
  image's prefetch record, and every layer is laid out in that order
  (`lazyctl relayout`), so the image starts fast from its first use.")]
pub struct ConvertArgs {
    /// Source image (any OCI or Docker v2 image; left untouched).
    #[arg(value_name = "SRC")]
    pub src: ImageLocation,

    /// Where to store the lazy image.
    #[arg(value_name = "DST")]
    pub dst: ImageLocation,

    /// Files larger than this are cut into chunks of this size (e.g. 256K, 1M).
    #[arg(long, value_name = "SIZE", value_parser = parse_chunk_size, default_value = "512K")]
    pub chunk_size: u32,

    /// zstd compression level of chunk data (1 = fastest, 19 = smallest).
    #[arg(long, value_name = "LEVEL", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,

    /// Compression threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Record the image's command after converting, store the record and
    /// lay the image out in its order (see below).
    #[arg(long, conflicts_with = "json")]
    pub record: bool,

    /// Stop the recorded command after this long (e.g. 60s, 5m); what it
    /// read until then is the record.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "record")]
    pub record_timeout: Duration,

    /// The command to record instead of the image's (after `--`).
    #[arg(last = true, requires = "record")]
    pub command: Vec<String>,

    /// lazyfsd to record with (with --record).
    #[command(flatten)]
    pub daemon: DaemonArgs,

    /// Registry connection options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn parse_chunk_size(text: &str) -> Result<u32, String> {
    let size = parse_size(text)?;
    let max = u64::from(lazy_format::MAX_CHUNK_SIZE);
    if !(4096..=max).contains(&size) {
        return Err(format!("chunk size must be between 4K and {}", human(max)));
    }
    u32::try_from(size).map_err(|_| "chunk size too large".to_owned())
}

/// Runs the conversion and prints the report.
pub async fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let client = args.registry.client()?;
    if args.record && !matches!(args.dst, ImageLocation::Registry(_)) {
        bail!(
            "--record runs the image through lazyfsd, which reads registries: DST must be a registry"
        );
    }
    let src =
        ImageStore::open(&args.src, &client).with_context(|| format!("opening {}", args.src))?;
    let dst =
        ImageStore::create(&args.dst, &client).with_context(|| format!("opening {}", args.dst))?;
    let mut opts = ConvertOptions {
        chunk_size: args.chunk_size,
        zstd_level: args.zstd_level,
        ..Default::default()
    };
    if let Some(threads) = args.threads {
        opts.threads = threads.max(1);
    }
    let bar = Arc::new(ConvertBar::new());
    let started = Instant::now();
    let result = convert_image(&src, &dst, &args.src.to_string(), &opts, bar.clone()).await;
    bar.finish();
    let report = result.with_context(|| format!("converting {} to {}", args.src, args.dst))?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&args, &report, seconds))?
        );
    } else {
        print_report(&args, &report, seconds);
    }
    if args.record {
        let image = args.dst.to_string();
        let recorded = record_command(
            &image,
            &args.command,
            &args.daemon,
            Some(args.record_timeout),
        )?;
        println!(
            "recorded {} chunks read by {}",
            recorded.record.chunks.len(),
            recorded.what
        );
        relayout_and_store(&client, &image, &recorded.record).await?;
        recorded.check_status()?;
    }
    Ok(())
}

fn print_report(args: &ConvertArgs, report: &ConvertReport, seconds: f64) {
    let source: u64 = report.source_sizes.iter().sum();
    let lazy: u64 = report.layers.iter().map(|l| l.size).sum();
    for (i, layer) in report.layers.iter().enumerate() {
        println!(
            "layer {:>2}  {}  {:>9} -> {:>9}  {} files, {} chunks ({} unique), metadata {}",
            i + 1,
            short(&layer.digest),
            human(report.source_sizes[i]),
            human(layer.size),
            layer.stats.files,
            layer.stats.chunk_refs,
            layer.stats.unique_chunks,
            human(layer.meta_len),
        );
    }
    println!(
        "converted {} -> {} in {seconds:.1}s: {} -> {} ({:.0}%)",
        args.src,
        args.dst,
        human(source),
        human(lazy),
        percent(lazy, source),
    );
    println!("{}", report.manifest_digest);
}

fn report_json(args: &ConvertArgs, report: &ConvertReport, seconds: f64) -> serde_json::Value {
    serde_json::json!({
        "source": args.src.to_string(),
        "destination": args.dst.to_string(),
        "source_digest": report.source_digest,
        "manifest_digest": report.manifest_digest,
        "seconds": seconds,
        "layers": report.layers.iter().zip(&report.source_sizes).map(|(l, src)| serde_json::json!({
            "digest": l.digest,
            "source_size": src,
            "size": l.size,
            "meta_bytes": l.meta_len,
            "stats": l.stats,
        })).collect::<Vec<_>>(),
    })
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
