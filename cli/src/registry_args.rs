//! Registry options shared by every subcommand that talks to a registry.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use lazy_control::RegistryConfig;
use lazy_oci::{ClientOptions, RegistryClient};

/// How to reach registries.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Use plain HTTP (no TLS) for this registry host ("host" or "host:port").
    /// Repeat for several hosts.
    #[arg(
        long = "insecure",
        value_name = "HOST",
        env = "LAZYFS_INSECURE",
        value_delimiter = ',',
        global = true
    )]
    pub insecure: Vec<String>,

    /// Timeout of one registry request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, global = true)]
    pub timeout: u64,

    /// Retries of a failed request (connection errors, timeouts, HTTP 5xx/429).
    #[arg(long, value_name = "N", default_value_t = 4, global = true)]
    pub retries: u32,

    /// Docker config with registry credentials (default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json).
    #[arg(long, value_name = "FILE", global = true)]
    pub docker_config: Option<PathBuf>,
}

impl RegistryArgs {
    /// A client configured from these options and lazyfsd's `[registry]`
    /// settings: insecure hosts from both, mirrors and docker config from
    /// the file unless given here.
    pub fn client_with(&self, config: &RegistryConfig) -> anyhow::Result<RegistryClient> {
        let mut insecure = config.insecure.clone();
        insecure.extend(self.insecure.iter().cloned());
        let opts = ClientOptions {
            insecure_hosts: insecure,
            timeout: Duration::from_secs(self.timeout.max(1)),
            retries: self.retries,
            docker_config: self
                .docker_config
                .clone()
                .or_else(|| config.docker_config.clone()),
            mirrors: config.mirrors.clone().into_iter().collect(),
            ..ClientOptions::default()
        };
        Ok(RegistryClient::new(opts)?)
    }

    /// A client configured from these options.
    pub fn client(&self) -> anyhow::Result<RegistryClient> {
        let opts = ClientOptions {
            insecure_hosts: self.insecure.clone(),
            timeout: Duration::from_secs(self.timeout.max(1)),
            retries: self.retries,
            docker_config: self.docker_config.clone(),
            ..ClientOptions::default()
        };
        Ok(RegistryClient::new(opts)?)
    }
}
