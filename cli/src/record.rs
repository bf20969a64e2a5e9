//! `lazyctl record IMAGE -- CMD…`: run a command on a lazy image and store
//! the chunks it read, in order, as the image's prefetch record.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;
use lazy_convert::{ImageStore, fetch_lazy_manifest, prefetch_tag, push_prefetch_record};
use lazy_fusefs::overlay::OverlayMount;
use lazy_fusefs::protocol::{PrefetchMode, PullPolicy, Request, Response};
use lazy_oci::Reference;

use crate::daemon_args::DaemonArgs;
use crate::registry_args::RegistryArgs;

/// Run a command on a lazy image (chroot into an overlay of its layers, new
/// mount and PID namespaces) and store the chunks it read as the image's
/// prefetch record, which lazyfsd fetches first on later attaches.
#[derive(Debug, Args)]
#[command(
    after_help = "EXAMPLE:\n  lazyctl record localhost:5000/r-base:lazy -- Rscript -e 'sessionInfo()'"
)]
pub struct RecordArgs {
    /// Lazy image in a registry.
    pub image: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// Daemon options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Registry options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

const RUN_IN_ROOT: &str = r#"root=$1; shift
mkdir -p "$root/proc" "$root/dev" "$root/tmp"
mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" || exit 125
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$root" "$@""#;

/// Records and stores; the command's failure is reported after storing.
pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let daemon = args.daemon.client()?;
    let attach = Request::Attach {
        image: args.image.clone(),
        pin: false,
        prefetch: Some(PrefetchMode::None),
        with_config: false,
        pull: PullPolicy::Always,
        credentials: None,
    };
    let Response::Layers(layers) = daemon.call(&attach)? else {
        bail!("unexpected answer to attach")
    };
    daemon.call(&Request::RecordStart {
        image: args.image.clone(),
    })?;
    let status = run_in_overlay(
        &layers
            .iter()
            .rev()
            .map(|l| PathBuf::from(&l.path))
            .collect::<Vec<_>>(),
        &args.command,
    );
    let record = match daemon.call(&Request::RecordStop)? {
        Response::Record(record) => record,
        other => bail!("unexpected answer to record stop: {other:?}"),
    };
    let status = status?;
    if record.chunks.is_empty() {
        bail!(
            "`{}` read no file content of the image; nothing stored (the image's \
             existing prefetch record, if any, is kept)",
            args.command.join(" ")
        );
    }

    let client = args.registry.client()?;
    let reference: Reference = args.image.parse()?;
    let image_store = ImageStore::Registry {
        client: client.clone(),
        reference: reference.clone(),
    };
    let manifest = fetch_lazy_manifest(&image_store, &args.image).await?;
    let tag = prefetch_tag(&manifest.digest);
    let record_store = ImageStore::Registry {
        client,
        reference: reference.with_tag(&tag),
    };
    push_prefetch_record(
        &record_store,
        (&manifest.digest, manifest.bytes.len() as u64),
        &record,
    )
    .await
    .context("storing the prefetch record")?;
    println!(
        "recorded {} chunks read by `{}`; stored as {}",
        record.chunks.len(),
        args.command.join(" "),
        reference.with_tag(&tag)
    );
    if !status.success() {
        bail!("the command failed ({status}); the record of what it read was stored anyway");
    }
    Ok(())
}

fn run_in_overlay(
    lowers: &[PathBuf],
    command: &[String],
) -> anyhow::Result<std::process::ExitStatus> {
    let dir = tempfile::Builder::new()
        .prefix("lazyctl-record-")
        .tempdir_in("/var/tmp")?;
    let overlay = OverlayMount::mount(dir.path(), lowers)?;
    let status = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--propagation",
            "private",
            "sh",
            "-c",
            RUN_IN_ROOT,
            "sh",
        ])
        .arg(&overlay.merged)
        .args(command)
        .status()
        .context("running unshare (util-linux)")?;
    drop(overlay);
    Ok(status)
}
