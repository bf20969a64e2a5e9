//! A real Debian `docker-registry` (CNCF distribution 2.8) on a free loopback
//! port, with its own config and storage in a temp dir, as an RAII guard.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

mod token_issuer;

use token_issuer::TokenIssuer;
pub use token_issuer::{ISSUER as TOKEN_ISSUER, SERVICE as TOKEN_SERVICE};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// A running `docker-registry serve`; killed (by PID) and its files removed on drop.
#[derive(Debug)]
pub struct TestRegistry {
    dir: tempfile::TempDir,
    storage: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    token_issuer: Option<TokenIssuer>,
}

/// How a test registry authenticates clients.
enum Auth<'a> {
    Anonymous,
    Htpasswd { user: &'a str, password: &'a str },
    Token { user: &'a str, password: &'a str },
}

impl TestRegistry {
    /// Starts an anonymous registry (pull and push without credentials).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_inner(Auth::Anonymous)
    }

    /// Starts a registry that requires HTTP Basic authentication as `user`/`password`.
    pub fn start_with_htpasswd(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_inner(Auth::Htpasswd { user, password })
    }

    /// Starts a registry with token authentication (`Bearer` challenges) and
    /// a token server that grants `user`/`password` what they ask for and
    /// anonymous clients nothing.
    pub fn start_with_token_auth(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_inner(Auth::Token { user, password })
    }

    fn start_inner(auth: Auth<'_>) -> anyhow::Result<Self> {
        crate::require_program("docker-registry", "docker-registry")?;
        let dir = tempfile::Builder::new()
            .prefix("lazy-registry-")
            .tempdir()
            .context("creating registry temp dir")?;
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).context("creating registry storage dir")?;
        let port = free_port()?;
        let mut token_issuer = None;
        let auth_section = match auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd { user, password } => {
                let path = write_htpasswd(dir.path(), user, password)?;
                format!(
                    "auth:\n  htpasswd:\n    realm: lazyfs-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token { user, password } => {
                let issuer = TokenIssuer::start(dir.path(), user, password)?;
                let section = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    issuer.realm(),
                    issuer.cert_pem().display()
                );
                token_issuer = Some(issuer);
                section
            }
        };
        let config = dir.path().join("config.yml");
        let text = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: lazyfs-test-secret\n\
             {auth_section}",
            storage.display()
        );
        std::fs::write(&config, text).context("writing registry config")?;
        let mut registry = Self {
            log: dir.path().join("registry.log"),
            dir,
            storage,
            config,
            port,
            child: None,
            token_issuer,
        };
        registry.spawn()?;
        Ok(registry)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning docker-registry")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("docker-registry exited with {status}; log:\n{}", self.log());
            }
            if self.answers_api() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                bail!(
                    "docker-registry not ready on {} after {READY_TIMEOUT:?}; log:\n{}",
                    self.host(),
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Whether `GET /v2/` answers 200 or 401 (API present, maybe behind auth).
    fn answers_api(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host());
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && (head.ends_with(b" 200") || head.ends_with(b" 401"))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The filesystem storage driver's root directory.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// Where the storage driver keeps the bytes of blob `digest` (`sha256:<hex>`).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let prefix = hex.get(..2).unwrap_or(hex);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(prefix)
            .join(hex)
            .join("data")
    }

    /// Kills the registry (by its PID) and waits for it; storage is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Whether the registry process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The registry's log so far: warnings and errors, and one access-log
    /// line per request (`"PATCH /v2/… HTTP/1.1" 202 …`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many requests the token server answered (0 without token auth).
    pub fn token_requests(&self) -> usize {
        self.token_issuer.as_ref().map_or(0, TokenIssuer::requests)
    }

    /// Bytes the registry has served for blob GETs (whole or ranged), from
    /// its access log: the registry's side of "bytes fetched".
    pub fn blob_bytes_served(&self) -> u64 {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .filter_map(|l| {
                // ... "GET /v2/... HTTP/1.1" 206 12345 "referer" "agent"
                let after = l.split("HTTP/1.1\" ").nth(1)?;
                let mut fields = after.split(' ');
                let status = fields.next()?;
                let bytes = fields.next()?;
                (status == "200" || status == "206")
                    .then(|| bytes.parse::<u64>().ok())
                    .flatten()
            })
            .sum()
    }

    /// The temp dir holding config, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago (bound to port 0, then released).
/// A loopback port free right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn write_htpasswd(dir: &Path, user: &str, password: &str) -> anyhow::Result<PathBuf> {
    crate::require_program("htpasswd", "apache2-utils")?;
    let output = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .stdin(Stdio::null())
        .output()
        .context("running htpasswd")?;
    if !output.status.success() {
        bail!(
            "htpasswd failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let path = dir.join("htpasswd");
    std::fs::write(&path, &output.stdout).context("writing htpasswd file")?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts() {
        let mut registry = TestRegistry::start().unwrap();
        assert!(registry.answers_api());
        let storage = registry.storage_dir().to_owned();
        assert!(storage.is_dir());
        registry.stop();
        assert!(!registry.answers_api());
        registry.restart().unwrap();
        assert!(registry.answers_api());
        let digest = format!("sha256:ab{}", "c".repeat(62));
        assert_eq!(
            registry.blob_data_path(&digest),
            storage.join(format!(
                "docker/registry/v2/blobs/sha256/ab/ab{}/data",
                "c".repeat(62)
            ))
        );
        let dir = registry.dir().to_owned();
        drop(registry);
        assert!(!dir.exists(), "temp dir removed on drop");
    }

    #[test]
    fn htpasswd_registry_demands_credentials() {
        let registry = TestRegistry::start_with_htpasswd("alice", "s3cret").unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, registry.port));
        let mut stream = TcpStream::connect(addr).unwrap();
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", registry.host());
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.0 401"), "{response}");
        assert!(
            response.contains("Basic realm=\"lazyfs-test\""),
            "{response}"
        );
    }
}
