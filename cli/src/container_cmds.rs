//! `lazyctl ps` and `lazyctl rm`: the containers `lazyrun` started.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use lazy_control::config::{DEFAULT_CONFIG, DaemonConfig};

use lazy_runtime::containers::{ContainerState, ContainerStore};

/// List containers (running ones; all with -a).
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show exited and dead containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Print only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Configuration file (its `[run] containers_dir` is used).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Remove containers: unmount their root filesystem and delete their
/// writable layer. Also cleans up after a lazyrun that was killed.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short, long)]
    pub force: bool,
    /// Names or ids (a unique id prefix is enough).
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Configuration file (its `[run] containers_dir` is used).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

fn store(config: &Path) -> anyhow::Result<ContainerStore> {
    let explicit = config.as_os_str() != DEFAULT_CONFIG;
    let config = DaemonConfig::load(config, explicit)?;
    Ok(ContainerStore::new(&config.run.containers_dir))
}

/// `lazyctl ps`.
pub fn ps(args: &PsArgs) -> anyhow::Result<()> {
    let containers = store(&args.config)?.list()?;
    let shown = containers
        .iter()
        .filter(|c| args.all || c.state() == ContainerState::Running);
    if args.quiet {
        for c in shown {
            println!("{}", &c.id[..12]);
        }
        return Ok(());
    }
    println!(
        "{:<12}  {:<20}  {:<36}  {:<30}  STATUS",
        "CONTAINER ID", "NAME", "IMAGE", "COMMAND"
    );
    for c in shown {
        let status = match c.state() {
            ContainerState::Running => format!("running (pid {})", c.pid),
            ContainerState::Exited(code) => format!("exited ({code})"),
            ContainerState::Dead => "dead (lazyrun killed; rm cleans up)".to_owned(),
        };
        let mut command = c.command.join(" ");
        if command.chars().count() > 30 {
            command = command.chars().take(29).collect::<String>() + "…";
        }
        println!(
            "{:<12}  {:<20}  {:<36}  {:<30}  {status}",
            &c.id[..12],
            c.name,
            c.image,
            command
        );
    }
    Ok(())
}

/// `lazyctl rm`: removes what it can, reports the rest, fails if any failed.
pub fn rm(args: &RmArgs) -> anyhow::Result<()> {
    let store = store(&args.config)?;
    let mut failed = 0;
    for name in &args.containers {
        match store.find(name).and_then(|c| store.remove(&c, args.force)) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("lazyctl: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} containers not removed",
            args.containers.len()
        );
    }
    Ok(())
}
