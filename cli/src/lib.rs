//! The lazyfs command-line front ends. Each subcommand is a small module
//! that parses nothing itself (clap does) and calls the library crates.

// Doc comments here are clap help texts, written in usage syntax
// (`REPO[:TAG]`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

pub mod cache_cmds;
pub mod container_cmds;
pub mod containerd_cmds;
pub mod convert;
pub mod daemon_args;
pub mod daemon_cmds;
pub mod inspect;
pub mod lazyrun;
pub mod podman;
pub mod progress;
pub mod publish;
pub mod record;
pub mod registry_args;
pub mod relayout;
pub mod unpack;

pub use lazy_control::size;

/// The exit status for a failed command: the kind's status from
/// [`lazy_control::ErrorKind::mapping`] when lazyfsd's answer (or its
/// absence) caused it, else 1.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<lazy_control::ClientError>())
        .map_or(1, |e| e.kind().mapping().exit_code)
}

/// Sets up logging to stderr: `RUST_LOG` if set, else warnings (or debug
/// with `verbose`).
pub fn init_logging(verbose: bool) {
    let default = if verbose { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
