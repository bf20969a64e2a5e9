//! `lazyctl cache …`: the host cache, per image and as a whole.

use std::time::Duration;

use clap::{Args, Subcommand};
use lazy_control::protocol::ImageUsage;

use crate::daemon_args::DaemonArgs;
use crate::size::{human, parse_size};

/// How long `cache pin` waits for the image to be fetched.
const PIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Inspect and maintain the host cache.
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
    /// Daemon options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Cache size, quota, fetch counters.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evict chunks no reader uses and no pinned layer needs.
    Gc {
        /// Keep at most this much (e.g. 1G); default: evict everything evictable.
        #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "0")]
        keep: u64,
    },
    /// Re-hash every cached chunk and drop corrupt ones.
    Verify,
    /// Attached images: size, bytes cached, pinned.
    Images {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pin an attached image: its chunks are never evicted (not by gc, not
    /// by the quota). Fetches every chunk not cached yet, so the image
    /// then runs with the registry, the proxies and the network gone.
    /// Refused when the pinned images together would not fit in the quota.
    Pin {
        /// The image, as attached.
        image: String,
        /// Only protect what is cached now; fetch nothing.
        #[arg(long)]
        no_fetch: bool,
    },
    /// Unpin an image: its chunks are evicted like others again (a layer
    /// another pinned image shares stays pinned).
    Unpin {
        /// The image, as attached.
        image: String,
    },
}

/// `lazyctl cache …`.
pub fn cache(args: CacheArgs) -> anyhow::Result<()> {
    let client = match &args.command {
        // Fetching a whole image may take long.
        CacheCommand::Pin {
            no_fetch: false, ..
        } => args.daemon.client_with_timeout(PIN_TIMEOUT)?,
        _ => args.daemon.client()?,
    };
    match args.command {
        CacheCommand::Stats { json } => {
            let s = client.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "cache        {} in {} chunks and copies (quota {})",
                    human(s.cache_bytes),
                    s.cache_chunks,
                    human(s.quota_bytes)
                );
                println!(
                    "fetched      {} in {} chunks, {} requests",
                    human(s.fetched_bytes),
                    s.fetched_chunks,
                    s.requests
                );
                println!("hits/misses  {}/{}", s.hits, s.misses);
                println!("evictions    {}", s.evictions);
                println!(
                    "copies       {} in {} whole files for passthrough ({} queued)",
                    human(s.copy_bytes),
                    s.copies,
                    s.assembly_queue
                );
                println!(
                    "corrupt      {} chunks failed verification",
                    s.verification_failures
                );
                println!("attached     {} layers", s.attached_layers);
                println!("prefetching  {} images", s.prefetching);
            }
        }
        CacheCommand::Gc { keep } => {
            let (chunks, removed) = client.gc(keep)?;
            println!("evicted {chunks} chunks ({})", human(removed));
        }
        CacheCommand::Verify => {
            let (chunks, removed) = client.verify()?;
            println!("verified {chunks} chunks, removed {removed} corrupt");
            if removed > 0 {
                anyhow::bail!("{removed} corrupt chunks were found and removed");
            }
        }
        CacheCommand::Images { json } => print_images(&client.images()?, json)?,
        CacheCommand::Pin { image, no_fetch } => {
            let usage = client.pin(&image, true, !no_fetch)?;
            println!(
                "pinned {image}: {} of {} cached",
                human(usage.cached_bytes),
                human(usage.bytes)
            );
        }
        CacheCommand::Unpin { image } => {
            client.pin(&image, false, false)?;
            println!("unpinned {image}");
        }
    }
    Ok(())
}

fn print_images(images: &[ImageUsage], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(images)?);
        return Ok(());
    }
    println!(
        "{:<50} {:>6} {:>10} {:>16}  PINNED",
        "IMAGE", "LAYERS", "SIZE", "CACHED"
    );
    for u in images {
        let share = match u.bytes {
            0 => 100,
            total => u.cached_bytes * 100 / total,
        };
        let cached = format!("{} ({share}%)", human(u.cached_bytes));
        let pinned = if u.pinned { "yes" } else { "no" };
        println!(
            "{:<50} {:>6} {:>10} {cached:>16}  {pinned}",
            u.image,
            u.layers,
            human(u.bytes)
        );
    }
    Ok(())
}
