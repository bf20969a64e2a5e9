//! Finding lazyfsd, and starting it when none runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use lazy_control::ControlClient;
use lazy_control::config::DaemonConfig;
use lazy_control::protocol::Request;

/// A client of the host's lazyfsd; starts `lazyfsd --daemon` with the same
/// configuration file first when nothing answers on its socket.
pub fn ensure_daemon(config: &DaemonConfig, config_path: &Path) -> anyhow::Result<ControlClient> {
    // Attaching fetches metadata of every layer: allow it time.
    let client = ControlClient::new(&config.socket, Duration::from_secs(300));
    if client.is_up() {
        return Ok(client);
    }
    let binary = lazyfsd_binary();
    tracing::info!("starting {}", binary.display());
    // --daemon returns once the mount is ready, or fails with its log.
    let out = Command::new(&binary)
        .arg("--daemon")
        .arg("--config")
        .arg(config_path)
        .output()
        .with_context(|| format!("starting lazyfsd ({})", binary.display()))?;
    if !out.status.success() {
        bail!(
            "lazyfsd did not start ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    match client.call(&Request::Ping) {
        Ok(_) => Ok(client),
        Err(e) => bail!(
            "lazyfsd started but does not answer on {}: {e}",
            config.socket.display()
        ),
    }
}

/// `lazyfsd` next to this program (an installed or built tree), else PATH.
fn lazyfsd_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("lazyfsd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("lazyfsd"))
}
