//! `lazyctl attach | detach | ls | cache …`: requests to lazyfsd.

use clap::Args;
use lazy_control::AttachOptions;
use lazy_control::protocol::{LayerInfo, PrefetchMode, PullPolicy, RegistryCredentials};

use crate::daemon_args::DaemonArgs;
use crate::progress::short;
use crate::size::human;

/// Attach a lazy image to lazyfsd; prints each layer's directory, bottom first.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Lazy image in a registry (REGISTRY/REPO[:TAG|@DIGEST]).
    pub image: String,
    /// Attach only this layer blob (digest) of IMAGE's repository.
    #[arg(long, value_name = "DIGEST", conflicts_with_all = ["pin", "prefetch"])]
    pub layer: Option<String>,
    /// Keep its chunks in the cache while attached (never evicted).
    #[arg(long)]
    pub pin: bool,
    /// Also show the image with its layers merged, as one read-only
    /// directory for chroot, `apptainer exec DIR` or `singularity exec DIR`
    /// (`<mountpoint>/images/<manifest digest>`); prints that directory
    /// instead of the layers'.
    #[arg(long, conflicts_with = "layer")]
    pub flat: bool,
    /// Fetch ahead of readers: none, record (the image's prefetch record),
    /// all (then the whole image, low priority). Default: lazyfsd's setting.
    #[arg(long, value_name = "MODE", value_parser = parse_prefetch)]
    pub prefetch: Option<PrefetchMode>,
    /// Log in to the registry as this user (instead of lazyfsd's docker
    /// config); the password is read from stdin. Kept in lazyfsd's memory
    /// for the layers' fetches, never written anywhere.
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Daemon options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Detach a layer (by digest) or every layer of an image (by reference).
#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Layer digest or image reference.
    pub target: String,
    /// Daemon options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// List attached layers.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Daemon options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// The password on stdin (one line, as `docker login --password-stdin`).
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("--username needs the password on stdin");
    }
    Ok(password.to_owned())
}

/// `lazyctl attach`.
pub fn attach(args: AttachArgs) -> anyhow::Result<()> {
    let credentials = match &args.username {
        Some(user) => Some(RegistryCredentials {
            username: user.clone(),
            password: password_from_stdin()?,
        }),
        None => None,
    };
    let client = args.daemon.client()?;
    let layers = match &args.layer {
        Some(digest) => vec![client.attach_layer(&args.image, digest, credentials)?],
        None => {
            let options = AttachOptions {
                pin: args.pin,
                prefetch: args.prefetch,
                pull: PullPolicy::Always,
                credentials,
            };
            client.attach(&args.image, options)?.layers
        }
    };
    if args.flat {
        let dir = client.flat(&args.image)?;
        match args.json {
            true => println!("{}", serde_json::json!({ "path": dir })),
            false => println!("{dir}"),
        }
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&layers)?);
    } else {
        for layer in &layers {
            println!("{}", layer.path);
        }
    }
    Ok(())
}

/// `lazyctl detach`.
pub fn detach(args: DetachArgs) -> anyhow::Result<()> {
    args.daemon.client()?.detach(&args.target)?;
    Ok(())
}

/// `lazyctl ls`.
pub fn ls(args: LsArgs) -> anyhow::Result<()> {
    let layers = args.daemon.client()?.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&layers)?);
        return Ok(());
    }
    println!(
        "{:<20} {:>8} {:>10} {:<6} IMAGE",
        "LAYER", "ENTRIES", "CONTENT", "PINNED"
    );
    for LayerInfo {
        digest,
        image,
        entries,
        file_bytes,
        pinned,
        ..
    } in &layers
    {
        println!(
            "{:<20} {entries:>8} {:>10} {:<6} {image}",
            short(digest),
            human(*file_bytes),
            if *pinned { "yes" } else { "no" }
        );
    }
    Ok(())
}

/// Parses `--prefetch`: none, record or all.
pub fn parse_prefetch(text: &str) -> Result<PrefetchMode, String> {
    text.parse()
}
