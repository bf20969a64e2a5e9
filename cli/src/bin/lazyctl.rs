//! `lazyctl`: convert, inspect and unpack lazyfs images.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lazy_cli::{
    cache_cmds, container_cmds, containerd_cmds, convert, daemon_cmds, init_logging, inspect,
    podman, publish, record, relayout, unpack,
};

/// Manage lazyfs lazy images.
///
/// lazyfs starts container images without downloading them: images are
/// converted once into lazy images (per-file, content-addressed, compressed
/// chunks plus a small metadata section per layer) stored in any OCI registry,
/// and mounted on demand by lazyfsd.
#[derive(Debug, Parser)]
#[command(name = "lazyctl", version, propagate_version = true)]
struct Cli {
    /// Log debug details to stderr (or set RUST_LOG).
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Convert(convert::ConvertArgs),
    Inspect(inspect::InspectArgs),
    Unpack(unpack::UnpackArgs),
    Attach(daemon_cmds::AttachArgs),
    Detach(daemon_cmds::DetachArgs),
    Ls(daemon_cmds::LsArgs),
    Cache(cache_cmds::CacheArgs),
    Record(record::RecordArgs),
    Relayout(relayout::RelayoutArgs),
    Publish(publish::PublishArgs),
    Pull(containerd_cmds::PullArgs),
    ContainerdConfig(containerd_cmds::ContainerdConfigArgs),
    PodmanSetup(podman::PodmanSetupArgs),
    Ps(container_cmds::PsArgs),
    Rm(container_cmds::RmArgs),
}

fn main() -> ExitCode {
    // `lazyctl record` runs containers the way lazyrun does, with this
    // binary re-executed as their init: it must take over first.
    lazy_runtime::init_main_if_requested();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Convert(args) => convert::run(args).await,
            Command::Inspect(args) => inspect::run(args).await,
            Command::Unpack(args) => unpack::run(args).await,
            Command::Attach(args) => daemon_cmds::attach(args),
            Command::Detach(args) => daemon_cmds::detach(args),
            Command::Ls(args) => daemon_cmds::ls(args),
            Command::Cache(args) => cache_cmds::cache(args),
            Command::Record(args) => record::run(args).await,
            Command::Relayout(args) => relayout::run(args).await,
            Command::Publish(args) => publish::run(args).await,
            Command::Pull(args) => containerd_cmds::pull(args).await,
            Command::ContainerdConfig(args) => containerd_cmds::containerd_config(&args),
            Command::PodmanSetup(args) => podman::podman_setup(&args),
            Command::Ps(args) => container_cmds::ps(&args),
            Command::Rm(args) => container_cmds::rm(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lazyctl: error: {err:#}");
            ExitCode::from(lazy_cli::exit_status(&err))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
