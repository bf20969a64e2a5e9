//! A real nginx serving a directory and a real squid caching proxy, each on
//! a free loopback port with its own config, logs and pid file in a temp
//! dir, as RAII guards killed by PID. Their access logs tell a test what
//! reached the origin and what went through each proxy.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::netns::Netns;
use crate::registry::free_port;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a server listens: a free loopback port, or an address and port
/// in a network namespace.
#[derive(Debug, Clone)]
pub enum Place<'a> {
    /// 127.0.0.1 and a free port.
    Loopback,
    /// `addr:port` in `netns`.
    Netns {
        /// The namespace.
        netns: &'a Netns,
        /// Its address the server listens on.
        addr: &'a str,
        /// The port.
        port: u16,
    },
}

/// A child process listening on a port.
#[derive(Debug)]
struct Server {
    dir: tempfile::TempDir,
    addr: String,
    port: u16,
    /// `/run/netns/<name>` when in a namespace.
    netns: Option<PathBuf>,
    program: &'static str,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    fn new(
        prefix: &str,
        program: &'static str,
        package: &str,
        place: &Place<'_>,
    ) -> anyhow::Result<Self> {
        crate::require_program(program, package)?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        // Workers that drop root (squid's `proxy` user) write logs here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
        let (addr, port, netns) = match place {
            Place::Loopback => ("127.0.0.1".to_owned(), free_port()?, None),
            Place::Netns { netns, addr, port } => ((*addr).to_owned(), *port, Some(netns.path())),
        };
        Ok(Self {
            dir,
            addr,
            port,
            netns,
            program,
            args: Vec::new(),
            child: None,
        })
    }

    fn listening(&self) -> bool {
        match &self.netns {
            None => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            }
            Some(path) => Command::new("nsenter")
                .arg(format!("--net={}", path.display()))
                .args(["timeout", "2", "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{}/{}", self.addr, self.port))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("{}.out", self.program)))?;
        let mut command = match &self.netns {
            None => Command::new(self.program),
            Some(path) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", path.display())).arg(self.program);
                c
            }
        };
        let child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.program))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.listening() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!("{} exited with {status}: {}", self.program, self.output());
            }
            if Instant::now() > deadline {
                self.stop();
                bail!(
                    "{} not listening after {READY_TIMEOUT:?}: {}",
                    self.program,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    fn output(&self) -> String {
        let path = self.dir.path().join(format!("{}.out", self.program));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Kills the process (SIGKILL, by PID) and reaps it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx serving `root` at `http://127.0.0.1:PORT/`, the way a store is
/// meant to be served: objects immutable and cacheable for a year, tags
/// for a minute (dist/nginx-lazyfs-store.conf).
#[derive(Debug)]
pub struct TestNginx {
    server: Server,
}

impl TestNginx {
    /// Starts nginx on a free loopback port.
    pub fn start(root: &Path) -> anyhow::Result<Self> {
        Self::start_at(root, &Place::Loopback)
    }

    /// Starts nginx at `place`.
    pub fn start_at(root: &Path, place: &Place<'_>) -> anyhow::Result<Self> {
        let mut server = Server::new("lazy-nginx-", "nginx", "nginx-light", place)?;
        let conf = server.file("nginx.conf");
        let text = format!(
            "user root;\nmaster_process off;\ndaemon off;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {access};\n  client_body_temp_path {tmp};\n\
               proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n\
               scgi_temp_path {tmp};\n  default_type application/octet-stream;\n\
               server {{\n    listen {addr}:{port};\n    root {root};\n{locations}  }}\n}}\n",
            pid = server.file("nginx.pid").display(),
            err = server.file("error.log").display(),
            access = server.file("access.log").display(),
            tmp = server.file("tmp").display(),
            addr = server.addr,
            port = server.port,
            root = root.display(),
            locations = STORE_LOCATIONS,
        );
        std::fs::write(&conf, text)?;
        server.args = vec!["-c".into(), conf.display().to_string()];
        server.spawn()?;
        Ok(Self { server })
    }

    /// `http://ADDR:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.server.addr, self.server.port)
    }

    /// The request paths that reached this server with a 200, one per request.
    pub fn served_paths(&self) -> Vec<String> {
        access_lines(&self.server.file("access.log"))
            .filter(|fields| fields.get(8).is_some_and(|s| s == "200"))
            .filter_map(|fields| fields.get(6).cloned())
            .collect()
    }

    /// Stops nginx.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// The nginx `location` blocks of a lazyfs store (as in dist/nginx-lazyfs-store.conf).
pub const STORE_LOCATIONS: &str = "    location /data/ { add_header Cache-Control \"public, max-age=31536000, immutable\"; }\n\
    location /pieces/ { add_header Cache-Control \"public, max-age=31536000, immutable\"; }\n\
    location /tags/ { add_header Cache-Control \"public, max-age=60\"; }\n";

/// squid as a caching forward proxy at `http://127.0.0.1:PORT`, caching in
/// memory only.
#[derive(Debug)]
pub struct TestSquid {
    server: Server,
}

impl TestSquid {
    /// Starts squid on a free loopback port, for clients on loopback.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_at(&Place::Loopback, "127.0.0.1/32")
    }

    /// Starts squid at `place` (listening on all of its namespace's
    /// addresses), for clients in `clients` (CIDR).
    pub fn start_at(place: &Place<'_>, clients: &str) -> anyhow::Result<Self> {
        let mut server = Server::new("lazy-squid-", "squid", "squid", place)?;
        let conf = server.file("squid.conf");
        let listen = match place {
            Place::Loopback => format!("127.0.0.1:{}", server.port),
            Place::Netns { port, .. } => port.to_string(),
        };
        let text = format!(
            "http_port {listen}\nacl clients src {clients}\nhttp_access allow clients\nhttp_access deny all\n\
             cache_mem 256 MB\nmaximum_object_size_in_memory 16 MB\nmaximum_object_size 16 MB\n\
             pid_filename {pid}\naccess_log stdio:{access}\ncache_log {cache_log}\n\
             cache_store_log none\nshutdown_lifetime 0 seconds\ncoredump_dir {dir}\n\
             collapsed_forwarding on\nvisible_hostname lazyfs-test-squid\n",
            pid = server.file("squid.pid").display(),
            access = server.file("access.log").display(),
            cache_log = server.file("cache.log").display(),
            dir = server.dir.path().display(),
        );
        std::fs::write(&conf, text)?;
        server.args = vec!["-N".into(), "-f".into(), conf.display().to_string()];
        server.spawn()?;
        Ok(Self { server })
    }

    /// `http://ADDR:PORT`, for a proxy list (ADDR as given at start; in a
    /// namespace, each client uses the address on its own link).
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.server.addr, self.server.port)
    }

    /// How many requests went through this proxy (not counting
    /// connections closed without one, as the readiness probe's).
    pub fn requests(&self) -> usize {
        access_lines(&self.server.file("access.log"))
            .filter(|fields| fields.get(3).is_some_and(|s| !s.starts_with("NONE_NONE/")))
            .count()
    }

    /// The access log, for messages.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.server.file("access.log")).unwrap_or_default()
    }

    /// Kills squid (SIGKILL): its port refuses connections from then on.
    pub fn kill(&mut self) {
        self.server.stop();
    }

    /// Starts squid again on the same port, with an empty cache.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.server.stop();
        self.server.spawn()
    }
}

/// The access log's lines, split at spaces.
fn access_lines(path: &Path) -> impl Iterator<Item = Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    lines.into_iter()
}
