//! `containerd-lazy-grpc`: the lazyfs snapshotter, served to containerd.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use containerd_snapshots::tonic::transport::Server;
use lazy_control::{ControlClient, DEFAULT_CONFIG, DaemonConfig};
use lazy_snapshotter::mounts::SnapshotDirs;
use lazy_snapshotter::service::LazySnapshotter;
use lazy_snapshotter::store::SnapshotStore;
use tokio_stream::wrappers::UnixListenerStream;

/// containerd proxy snapshotter for lazyfs: lazy layers become remote
/// snapshots mounted through lazyfsd (nothing is downloaded for them);
/// every other layer, and every container, gets an ordinary overlay
/// snapshot.
///
/// Configure containerd with
///   [proxy_plugins.lazyfs]
///     type = "snapshot"
///     address = "/run/containerd-lazy-grpc/containerd-lazy-grpc.sock"
#[derive(Debug, Parser)]
#[command(name = "containerd-lazy-grpc", version)]
struct Args {
    /// Unix socket containerd connects to.
    #[arg(
        long,
        value_name = "SOCKET",
        default_value = "/run/containerd-lazy-grpc/containerd-lazy-grpc.sock"
    )]
    address: PathBuf,
    /// Snapshot directories and metadata.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/containerd-lazy-grpc"
    )]
    root: PathBuf,
    /// lazyfsd's configuration file (its `socket` is used).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Log debug details (or set RUST_LOG).
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.verbose { "debug" } else { "info" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-lazy-grpc: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let explicit = args.config.as_os_str() != DEFAULT_CONFIG;
    let config = DaemonConfig::load(&args.config, explicit)?;
    let store = SnapshotStore::open(&args.root)
        .with_context(|| format!("opening {}", args.root.display()))?;
    let daemon = ControlClient::new(&config.socket, Duration::from_secs(300));
    let snapshotter = LazySnapshotter::new(store, SnapshotDirs::new(&args.root), Some(daemon));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = bind(&args.address)?;
        tracing::info!(address = %args.address.display(), root = %args.root.display(), "serving containerd");
        Server::builder()
            .add_service(containerd_snapshots::server(Arc::new(snapshotter)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop_signal())
            .await
            .context("serving the snapshots API")
    })
}

/// Binds the socket (mode 0600, a stale one replaced).
fn bind(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing stale {}", path.display()));
        }
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
}
