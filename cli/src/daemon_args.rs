//! How lazyctl finds lazyfsd: the socket from the daemon's config file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use lazy_control::ControlClient;
use lazy_control::config::{DEFAULT_CONFIG, DaemonConfig};

/// Where the daemon listens.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// lazyfsd configuration file (its `socket` setting is used).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, global = true)]
    pub config: PathBuf,

    /// Control socket of lazyfsd (overrides the config file).
    #[arg(long, value_name = "PATH", env = "LAZYFS_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
}

impl DaemonArgs {
    /// The daemon's config file, with `--socket` applied.
    pub fn config(&self) -> anyhow::Result<DaemonConfig> {
        let explicit = self.config.as_os_str() != DEFAULT_CONFIG;
        let mut config = DaemonConfig::load(&self.config, explicit)?;
        if let Some(socket) = &self.socket {
            config.socket = socket.clone();
        }
        Ok(config)
    }

    /// A client of the daemon.
    pub fn client(&self) -> anyhow::Result<ControlClient> {
        // Attaching fetches metadata of every layer: allow it time.
        self.client_with_timeout(Duration::from_secs(300))
    }

    /// A client of the daemon that waits `timeout` for an answer.
    pub fn client_with_timeout(&self, timeout: Duration) -> anyhow::Result<ControlClient> {
        let socket = match &self.socket {
            Some(s) => s.clone(),
            None => self.config()?.socket,
        };
        Ok(ControlClient::new(socket, timeout))
    }
}
