//! `lazyctl record IMAGE -- CMD…`: run a command on a lazy image and store
//! the chunks it read, in order, as the image's prefetch record.

use anyhow::{Context, bail};
use clap::{Args, Parser};
use lazy_image::{ImageStore, fetch_lazy_manifest, prefetch_tag, push_prefetch_record};
use lazy_oci::Reference;

use crate::daemon_args::DaemonArgs;
use crate::lazyrun::{self, args::RunArgs, load_config};
use crate::registry_args::RegistryArgs;

/// Run a command in a container of a lazy image, exactly as `lazyrun --rm`
/// would (the image's entrypoint, environment, working directory and user;
/// the same namespaces and runtime), and store the chunks it read as the
/// image's prefetch record, which lazyfsd fetches first on later attaches.
/// Without a command, the image's own entrypoint and cmd run.
#[derive(Debug, Args)]
#[command(
    after_help = "EXAMPLE:\n  lazyctl record localhost:5000/r-base:lazy -- Rscript -e 'sessionInfo()'"
)]
pub struct RecordArgs {
    /// Lazy image in a registry.
    pub image: String,
    /// The command and its arguments (after `--`; default: the image's).
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Daemon options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Registry options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Records and stores; the command's failure is reported after storing.
pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let mut config = load_config(&args.daemon.config)?;
    if let Some(socket) = &args.daemon.socket {
        config.socket = socket.clone();
    }
    let registry = args.registry.client_with(&config.registry)?;
    // Exactly lazyrun's path: its options, its attach, its process rules
    // (the image's entrypoint, env, workdir and user), its runtime.
    let mut argv: Vec<std::ffi::OsString> = [
        "lazyrun",
        "--rm",
        "--pull",
        "always",
        "--prefetch",
        "none",
        "--config",
    ]
    .map(Into::into)
    .into();
    argv.push(args.daemon.config.clone().into());
    argv.push(args.image.clone().into());
    argv.push("--".into());
    argv.extend(args.command.iter().map(Into::into));
    let run_args = RunArgs::try_parse_from(argv)?;
    let prepared = lazyrun::prepare(&run_args, config)?;
    let (daemon, image) = (prepared.daemon.clone(), prepared.image.clone());
    daemon.record_start(&image)?;
    let status = tokio::task::block_in_place(|| lazyrun::run_prepared(&run_args, prepared));
    let record = daemon.record_stop()?;
    let status = status?;
    let what = match args.command.is_empty() {
        true => "the image's command".to_owned(),
        false => format!("`{}`", args.command.join(" ")),
    };
    if record.chunks.is_empty() {
        bail!(
            "{what} read no file content of the image; nothing stored (the image's \
             existing prefetch record, if any, is kept)"
        );
    }

    let reference: Reference = image.parse()?;
    let image_store = ImageStore::Registry {
        client: registry.clone(),
        reference: reference.clone(),
    };
    let manifest = fetch_lazy_manifest(&image_store, &image).await?;
    let tag = prefetch_tag(&manifest.digest);
    let record_store = ImageStore::Registry {
        client: registry,
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
        "recorded {} chunks read by {what}; stored as {}",
        record.chunks.len(),
        reference.with_tag(&tag)
    );
    if status != 0 {
        bail!(
            "the command failed (exit code {status}); the record of what it read was stored anyway"
        );
    }
    Ok(())
}
