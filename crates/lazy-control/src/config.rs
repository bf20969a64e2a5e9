//! `/etc/lazyfs/config.toml`: every setting of lazyfsd, each with a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::size::parse_size;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/lazyfs/config.toml";

/// The daemon's settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Cache directory: chunk files, index, layer metadata.
    pub cache_dir: PathBuf,
    /// Where the FUSE filesystem is mounted.
    pub mountpoint: PathBuf,
    /// Where to serve the additional layer store of Podman and CRI-O
    /// (`additionallayerstores = ["<layer_store>:ref"]` in storage.conf);
    /// empty: not served. `lazyctl podman-setup` sets both.
    pub layer_store: PathBuf,
    /// The control socket (mode 0600).
    pub socket: PathBuf,
    /// Log file in daemon mode.
    pub log_file: PathBuf,
    /// Cache quota, e.g. "10G".
    pub quota: String,
    /// Memory for the hot set of small chunks, e.g. "64M".
    pub hot_set: String,
    /// Seconds before a chunk fetch fails with EIO.
    pub fetch_timeout_secs: u64,
    /// Range requests in flight at once.
    pub max_concurrent_fetches: usize,
    /// Threads reading /dev/fuse.
    pub fuse_threads: usize,
    /// Let the kernel read cached single-chunk files directly from the cache
    /// (FUSE passthrough, Linux 6.9+), without a round trip through lazyfsd.
    pub passthrough: bool,
    /// How far a read that misses also fetches the chunks after it in the
    /// layer blob (its neighbours: mostly files of its directory): "auto"
    /// (the link's bandwidth × round trip, as measured), a size such as
    /// "512K", or "0" (off, the default: measured on R's start without a
    /// record, it saves a fifth of the time at 1 Gbit for 3.3× the bytes,
    /// and costs a fifth at 100 Mbit; see bench/results).
    pub read_around: String,
    /// When a process loads an executable or library that is not cached,
    /// fetch the shared libraries it needs (resolved in its image as the
    /// dynamic linker does) at once, instead of one after another as the
    /// linker opens them. On by default.
    pub prefetch_libraries: bool,
    /// When a read misses, fetch the rest of the file if it is at most
    /// 2 MiB, and if it is small, the small files next to it (its
    /// directory's and package's), in the background. On by default.
    pub prefetch_nearby: bool,
    /// Kernel read-ahead of the mount, e.g. "128K" (the kernel's default).
    /// More speeds up cached sequential reads; on a cold cache it fetches
    /// more than programs read.
    pub read_ahead: String,
    /// Prometheus metrics address (`host:port`); none when empty.
    pub metrics_address: String,
    /// What to fetch after an attach: "none", "record" (the image's
    /// prefetch record) or "all" (then the rest of the image, low priority).
    pub prefetch: crate::protocol::PrefetchMode,
    /// Registry settings.
    pub registry: RegistryConfig,
    /// HTTP proxies for registries and stores.
    pub proxy: ProxyConfig,
    /// HTTP content-addressed stores (written by `lazyctl publish`) by
    /// name: images `NAME/repository:tag` are read from the store, not
    /// from a registry. A name looks like a host (`cas.example.org`).
    pub stores: BTreeMap<String, StoreConfig>,
    /// `lazyrun` settings.
    pub run: RunConfig,
}

/// How `lazyrun` names images and keeps containers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Registry for short image names: `r-base` means
    /// `<default_registry>/r-base:latest`.
    pub default_registry: String,
    /// Per-container directories (upper dir, state).
    pub containers_dir: PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            default_registry: "localhost:5000".into(),
            containers_dir: PathBuf::from("/var/lib/lazyfs/containers"),
        }
    }
}

/// How lazyfsd reaches registries.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Hosts spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Docker config with credentials (default: $DOCKER_CONFIG or ~/.docker).
    pub docker_config: Option<PathBuf>,
    /// Timeout of one registry request, seconds.
    pub timeout_secs: u64,
    /// Retries of failed requests.
    pub retries: u32,
    /// Pull-through mirrors by registry, tried in order before it:
    /// `mirrors = { "docker.io" = ["mirror.local:5000"] }`.
    pub mirrors: BTreeMap<String, Vec<String>>,
}

/// Site proxies, tried in order, as CernVM-FS's proxy list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://host:port` or `DIRECT` (no proxy), in order; empty: the
    /// environment's `http_proxy`. A proxy that fails is left out for
    /// `backoff_secs`, and requests go through the next one.
    pub servers: Vec<String>,
    /// Seconds a failed proxy (or store URL) is left out.
    pub backoff_secs: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            backoff_secs: 60,
        }
    }
}

/// One HTTP content-addressed store.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Its URLs (mirrors of each other), tried in order.
    pub urls: Vec<String>,
    /// Proxies for this store only, in order, instead of `[proxy] servers`
    /// (`["DIRECT"]`: none).
    pub proxies: Option<Vec<String>>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("/var/lib/lazyfs"),
            mountpoint: PathBuf::from("/var/lib/lazyfs/mnt"),
            layer_store: PathBuf::new(),
            socket: PathBuf::from("/run/lazyfs/lazyfsd.sock"),
            log_file: PathBuf::from("/var/log/lazyfsd.log"),
            quota: "10G".into(),
            hot_set: "64M".into(),
            fetch_timeout_secs: 30,
            max_concurrent_fetches: 16,
            fuse_threads: 4,
            passthrough: true,
            read_ahead: "128K".into(),
            read_around: "0".into(),
            prefetch_libraries: true,
            prefetch_nearby: true,
            metrics_address: String::new(),
            prefetch: crate::protocol::PrefetchMode::Record,
            registry: RegistryConfig::default(),
            proxy: ProxyConfig::default(),
            stores: BTreeMap::new(),
            run: RunConfig::default(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            docker_config: None,
            timeout_secs: 30,
            retries: 2,
            mirrors: BTreeMap::new(),
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message (names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting.
        key: &'static str,
        /// Why.
        message: String,
    },
}

impl DaemonConfig {
    /// Loads `path`; a missing default file means all defaults.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config
            .quota_bytes()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                key: "quota",
                message,
            })?;
        config
            .hot_set_bytes()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                key: "hot_set",
                message,
            })?;
        config
            .read_ahead_kib()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                key: "read_ahead",
                message,
            })?;
        config
            .read_around_setting()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                key: "read_around",
                message,
            })?;
        config
            .check_stores()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                key: "stores",
                message,
            })?;
        Ok(config)
    }

    /// Store names must read as a registry host in a reference, and each
    /// store needs a URL.
    fn check_stores(&self) -> Result<(), String> {
        for (name, store) in &self.stores {
            let host_like = name.contains('.') || name.contains(':') || name == "localhost";
            if !host_like || name.contains('/') {
                return Err(format!(
                    "{name:?}: a store name looks like a host (\"cas.example.org\"), \
                     so that image references can start with it"
                ));
            }
            if store.urls.is_empty() {
                return Err(format!("{name:?} has no urls"));
            }
        }
        Ok(())
    }

    /// The quota in bytes.
    pub fn quota_bytes(&self) -> Result<u64, String> {
        parse_size(&self.quota)
    }

    /// The read-ahead in KiB (what the kernel's `read_ahead_kb` takes).
    pub fn read_ahead_kib(&self) -> Result<u32, String> {
        let bytes = parse_size(&self.read_ahead)?;
        if bytes % 4096 != 0 || bytes > 64 << 20 {
            return Err("must be a multiple of 4K, at most 64M".into());
        }
        u32::try_from(bytes / 1024).map_err(|_| "too large".to_owned())
    }

    /// The read-around setting: `None` for "auto", else a size in bytes
    /// (0: off). At most 16M: the reader waits for what comes along.
    pub fn read_around_setting(&self) -> Result<Option<u64>, String> {
        if self.read_around == "auto" {
            return Ok(None);
        }
        match parse_size(&self.read_around)? {
            bytes if bytes > 16 << 20 => Err("must be \"auto\" or a size of at most 16M".into()),
            bytes => Ok(Some(bytes)),
        }
    }

    /// The hot set budget in bytes.
    pub fn hot_set_bytes(&self) -> Result<usize, String> {
        usize::try_from(parse_size(&self.hot_set)?).map_err(|_| "too large".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "quota = \"2G\"\n[registry]\ninsecure = [\"localhost:5000\"]\n\
             mirrors = { \"docker.io\" = [\"m1:5000\", \"m2\"] }\n",
        )
        .unwrap();
        let c = DaemonConfig::load(&path, true).unwrap();
        assert_eq!(c.quota_bytes(), Ok(2 << 30));
        assert_eq!(c.registry.insecure, vec!["localhost:5000".to_owned()]);
        assert_eq!(c.registry.mirrors["docker.io"], ["m1:5000", "m2"]);
        assert_eq!(c.fuse_threads, 4);
        std::fs::write(&path, "qouta = \"2G\"\n").unwrap();
        let err = DaemonConfig::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("qouta"), "{err}");
        std::fs::write(&path, "read_ahead = \"1M\"\n").unwrap();
        assert_eq!(
            DaemonConfig::load(&path, true).unwrap().read_ahead_kib(),
            Ok(1024)
        );
        std::fs::write(&path, "read_ahead = \"1000\"\n").unwrap();
        assert!(DaemonConfig::load(&path, true).is_err());
        std::fs::write(&path, "quota = \"lots\"\n").unwrap();
        assert!(DaemonConfig::load(&path, true).is_err());
        assert_eq!(DaemonConfig::default().read_around_setting(), Ok(Some(0)));
        for (value, setting) in [("auto", None), ("512K", Some(512 << 10)), ("0", Some(0))] {
            std::fs::write(&path, format!("read_around = \"{value}\"\n")).unwrap();
            let config = DaemonConfig::load(&path, true).unwrap();
            assert_eq!(config.read_around_setting(), Ok(setting), "{value}");
        }
        for bad in ["32M", "sometimes"] {
            std::fs::write(&path, format!("read_around = \"{bad}\"\n")).unwrap();
            let err = DaemonConfig::load(&path, true).unwrap_err().to_string();
            assert!(err.contains("read_around"), "{bad}: {err}");
        }
        std::fs::write(
            &path,
            "[proxy]\nservers = [\"http://p1:3128\", \"DIRECT\"]\n\
             [stores.\"cas.site\"]\nurls = [\"http://a/lazyfs\"]\n",
        )
        .unwrap();
        let config = DaemonConfig::load(&path, true).unwrap();
        assert_eq!(config.proxy.servers, ["http://p1:3128", "DIRECT"]);
        assert_eq!(config.stores["cas.site"].urls, ["http://a/lazyfs"]);
        for bad in [
            "[stores.site]\nurls = [\"http://a\"]\n",
            "[stores.\"a.b\"]\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = DaemonConfig::load(&path, true).unwrap_err().to_string();
            assert!(err.contains("stores"), "{bad}: {err}");
        }
        assert_eq!(
            DaemonConfig::load(&dir.path().join("none.toml"), false).unwrap(),
            DaemonConfig::default()
        );
    }
}
