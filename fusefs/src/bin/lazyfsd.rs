//! `lazyfsd`: the lazyfs host daemon.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use clap::Parser;
use lazy_control::{DEFAULT_CONFIG, DaemonConfig};

/// Mount lazy images through FUSE and fetch their content on first read
/// into one cache shared by every container on the host.
///
/// Attach images with `lazyctl attach IMAGE`; each layer appears at
/// MOUNTPOINT/sha256:HEX/ (one directory per layer digest).
#[derive(Debug, Parser)]
#[command(name = "lazyfsd", version)]
struct Args {
    /// Configuration file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    config: PathBuf,

    /// Detach into the background once mounted and ready (logs go to the
    /// configured log file); the default is to stay in the foreground.
    #[arg(long)]
    daemon: bool,

    /// Run under a supervisor that keeps the mounts (the layers, Podman's
    /// layer store) alive across restarts: when lazyfsd dies (a crash,
    /// kill -9) it is started again and takes the live FUSE sessions over,
    /// so running containers keep reading
    /// without an error. SIGHUP replaces lazyfsd with the binary now on
    /// disk the same way (an upgrade); SIGTERM stops both.
    #[arg(long)]
    supervise: bool,

    /// Print READY on stdout once ready (used by --daemon and supervisors).
    #[arg(long, hide = true)]
    notify_stdout: bool,

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
            eprintln!("lazyfsd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let explicit = args.config.as_os_str() != DEFAULT_CONFIG;
    let config = DaemonConfig::load(&args.config, explicit)?;
    if args.daemon {
        return daemonize(args, &config);
    }
    if args.supervise {
        let mut worker: Vec<std::ffi::OsString> =
            vec!["--config".into(), args.config.clone().into()];
        worker.extend(args.notify_stdout.then(|| "--notify-stdout".into()));
        worker.extend(args.verbose.then(|| "--verbose".into()));
        return lazy_fusefs::supervise(&worker);
    }
    let notify = args.notify_stdout;
    lazy_fusefs::run(&config, || {
        if notify {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "READY").and_then(|()| out.flush());
        }
    })
}

/// Starts this program again in the foreground, detached, and returns once
/// it reports READY (or fails with its log).
fn daemonize(args: &Args, config: &DaemonConfig) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = config.log_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.log_file)
        .with_context(|| format!("opening log file {}", config.log_file.display()))?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(&args.config)
        .arg("--notify-stdout")
        .args(args.verbose.then_some("--verbose"))
        .args(args.supervise.then_some("--supervise"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting lazyfsd in the background")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    if line.trim() == "READY" {
        println!(
            "lazyfsd running (pid {}), log {}",
            child.id(),
            config.log_file.display()
        );
        return Ok(());
    }
    let status = child.wait()?;
    bail!(
        "lazyfsd failed to start ({status}); see {}",
        config.log_file.display()
    )
}
