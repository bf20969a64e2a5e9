//! `lazyctl podman-setup`: Podman and CRI-O find lazy layers in lazyfsd's
//! additional layer store. It sets lazyfsd's `layer_store` and adds the
//! store to containers/storage's `storage.conf`, changing nothing else.

pub mod conf_edit;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use lazy_control::config::DaemonConfig;
use lazy_statefile::{Durability, write_atomic};

use crate::daemon_args::DaemonArgs;
use conf_edit::{Edited, add_layer_store, set_layer_store};

/// containers/storage's system-wide config (Podman as root, CRI-O).
pub const STORAGE_CONF: &str = "/etc/containers/storage.conf";
/// Where the store is served unless lazyfsd's config says otherwise.
pub const DEFAULT_LAYER_STORE: &str = "/var/lib/lazyfs/store";

/// Set up Podman and CRI-O to run lazy images without downloading them.
///
/// Sets `layer_store` in lazyfsd's config (where lazyfsd serves the
/// additional layer store) and puts that store first in storage.conf's
/// `additionallayerstores`, with the overlay driver it needs. Other
/// settings and comments stay as they were; a changed file is backed up
/// first as FILE.lazyfs-backup. Restart lazyfsd afterwards; then `podman
/// pull` of a lazy image fetches no layer, and `podman run` reads through
/// lazyfsd. Runs again harmlessly.
#[derive(Debug, Args)]
pub struct PodmanSetupArgs {
    /// containers/storage config to edit (CRI-O reads the same file).
    #[arg(long, value_name = "FILE", env = "CONTAINERS_STORAGE_CONF", default_value = STORAGE_CONF)]
    pub storage_conf: PathBuf,
    /// Where lazyfsd serves the store [default: lazyfsd's `layer_store`,
    /// else /var/lib/lazyfs/store].
    #[arg(long, value_name = "DIR")]
    pub layer_store: Option<PathBuf>,
    /// Print the new files instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
    /// lazyfsd's config file to edit.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Runs `lazyctl podman-setup`.
pub fn podman_setup(args: &PodmanSetupArgs) -> anyhow::Result<()> {
    let daemon_conf = &args.daemon.config;
    // The file need not exist yet: this command makes it.
    let configured = DaemonConfig::load(daemon_conf, false)?.layer_store;
    let store = match &args.layer_store {
        Some(dir) => dir.clone(),
        None if !configured.as_os_str().is_empty() => configured,
        None => PathBuf::from(DEFAULT_LAYER_STORE),
    };
    anyhow::ensure!(
        store.is_absolute(),
        "the layer store must be an absolute path, not {}",
        store.display()
    );
    let storage = add_layer_store(&read_or_empty(&args.storage_conf)?, &store)
        .with_context(|| format!("editing {}", args.storage_conf.display()))?;
    let daemon = set_layer_store(&read_or_empty(daemon_conf)?, &store)
        .with_context(|| format!("editing {}", daemon_conf.display()))?;
    for warning in &storage.warnings {
        eprintln!("lazyctl: warning: {warning}");
    }
    if args.dry_run {
        print_file(daemon_conf, &daemon);
        print_file(&args.storage_conf, &storage);
        return Ok(());
    }
    save(daemon_conf, &daemon)?;
    save(&args.storage_conf, &storage)?;
    println!(
        "layer store: {}\n  {}: {}\n  {}: {}",
        store.display(),
        daemon_conf.display(),
        if daemon.changed {
            "layer_store set"
        } else {
            "unchanged"
        },
        args.storage_conf.display(),
        if storage.changed {
            "store added"
        } else {
            "unchanged"
        },
    );
    if daemon.changed {
        println!("Restart lazyfsd to serve the store (systemctl restart lazyfsd).");
    }
    println!("Then: podman pull IMAGE; podman run IMAGE …");
    Ok(())
}

fn read_or_empty(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn print_file(path: &Path, edited: &Edited) {
    let state = if edited.changed {
        "changed"
    } else {
        "unchanged"
    };
    println!("# {} ({state})\n{}", path.display(), edited.text);
}

/// Writes `edited` to `path` if it changed, after backing up the old file.
fn save(path: &Path, edited: &Edited) -> anyhow::Result<()> {
    if !edited.changed {
        return Ok(());
    }
    if path.exists() {
        let backup = PathBuf::from(format!("{}.lazyfs-backup", path.display()));
        std::fs::copy(path, &backup)
            .with_context(|| format!("backing up {} as {}", path.display(), backup.display()))?;
    } else if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(path, edited.text.as_bytes(), Durability::Synced)
        .with_context(|| format!("writing {}", path.display()))
}
