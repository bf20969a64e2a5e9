//! `lazyrun`'s command line: `docker run`'s options that make sense here.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use lazy_control::config::DEFAULT_CONFIG;
use lazy_control::protocol::{PrefetchMode, PullPolicy};

/// Run a command in a new container from a lazy image, without pulling it.
///
/// Fetches the image's manifest, config and layer metadata only, attaches
/// the layers to lazyfsd (starting it when none runs), mounts an overlay of
/// them under a fresh writable directory, and runs the command in its own
/// namespaces. File contents are fetched on first read into the host's
/// shared cache. The exit code is the command's; 125 means lazyrun itself
/// failed, 126 the command cannot be executed, 127 it was not found.
///
/// Short names use the configured default registry: with
/// `default_registry = "localhost:5000"`, `r-base` is
/// `localhost:5000/r-base:latest`. Images must be lazy: convert ordinary
/// images once with `lazyctl convert`. Manage containers with
/// `lazyctl ps` and `lazyctl rm`.
#[derive(Debug, Parser)]
#[command(
    name = "lazyrun",
    version,
    trailing_var_arg = true,
    after_help = "Examples:\n  lazyrun r-base Rscript -e 'sessionInfo()'\n  lazyrun --rm -it -v $PWD:/work -w /work localhost:5000/debian:lazy bash"
)]
pub struct RunArgs {
    /// Remove the container (its writable layer and state) when it exits.
    #[arg(long)]
    pub rm: bool,

    /// Name of the container (default: generated).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Set an environment variable (KEY=VALUE, or KEY to copy the host's).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Bind-mount a host path: HOST:CONTAINER[:ro|rw].
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volume: Vec<String>,

    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// User: name|uid[:group|gid].
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Override the image's entrypoint ("" clears it).
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,

    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,

    /// Keep stdin connected (otherwise the container reads /dev/null).
    #[arg(short, long)]
    pub interactive: bool,

    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,

    /// Network: host (share the host's) or none (loopback only).
    #[arg(long, value_enum, default_value_t = Network::Host)]
    pub net: Network,

    /// Container hostname (default: the first 12 characters of its id).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Memory limit, e.g. 512M or 2G.
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,

    /// CPU limit in cores, e.g. 1.5.
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<f64>,

    /// Maximum number of processes.
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,

    /// Run with the built-in runtime, or write an OCI bundle and run it with
    /// runc or crun.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Builtin)]
    pub runtime: RuntimeKind,

    /// What lazyfsd fetches ahead of reads: none, record (the image's
    /// prefetch record) or all (default: its configured policy).
    #[arg(long, value_name = "MODE", value_parser = crate::daemon_cmds::parse_prefetch)]
    pub prefetch: Option<PrefetchMode>,

    /// When to ask the registry for the image: missing (only when it was
    /// never attached on this host), always, or never.
    #[arg(long, value_name = "WHEN", default_value = "missing", value_parser = parse_pull)]
    pub pull: PullPolicy,

    /// Configuration file (shared with lazyfsd).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Log debug details to stderr (or set RUST_LOG).
    #[arg(long)]
    pub verbose: bool,

    /// Image: a lazy image reference or a short name.
    pub image: String,

    /// Command and arguments (default: the image's).
    #[arg(allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn parse_pull(text: &str) -> Result<PullPolicy, String> {
    match text {
        "missing" => Ok(PullPolicy::Missing),
        "always" => Ok(PullPolicy::Always),
        "never" => Ok(PullPolicy::Never),
        _ => Err(format!(
            "unknown pull policy {text:?}: use missing, always or never"
        )),
    }
}

/// `--net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A new network namespace with loopback only.
    None,
}

/// `--runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// lazyrun's own runtime.
    Builtin,
    /// runc, from PATH.
    Runc,
    /// crun, from PATH.
    Crun,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn options_are_consistent() {
        super::RunArgs::command().debug_assert();
    }
}
