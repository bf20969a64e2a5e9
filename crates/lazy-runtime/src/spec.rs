//! What to run and how: the container spec handed to [`crate::run`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// The PATH docker gives a container whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A container to run: root filesystem, process, isolation and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Container id or name: names the cgroup and is the default hostname.
    /// Letters, digits, `_`, `.` and `-`, starting with a letter or digit.
    pub id: String,
    /// The prepared root directory (an overlay mount in production). The
    /// runtime bind-mounts it onto itself, so it need not be a mount point.
    pub rootfs: PathBuf,
    /// argv; `args[0]` is looked up on the container's PATH unless it has a `/`.
    pub args: Vec<String>,
    /// Environment, `K=V`. PATH, HOSTNAME and HOME (and TERM with `tty`) get
    /// docker's defaults when missing.
    pub env: Vec<String>,
    /// Working directory inside the container; created if missing.
    pub cwd: PathBuf,
    /// Who the process runs as.
    pub user: User,
    /// Hostname in the container's UTS namespace; empty means the first 12
    /// characters of `id`.
    pub hostname: String,
    /// Network namespace.
    pub network: NetworkMode,
    /// Host directories or files mounted into the container.
    pub binds: Vec<BindMount>,
    /// Mount the root filesystem read-only.
    pub read_only_rootfs: bool,
    /// Give the process a pseudo-terminal, relayed to the caller's stdin and
    /// stdout (the caller's terminal is put in raw mode meanwhile).
    pub tty: bool,
    /// cgroup limits.
    pub resources: Resources,
    /// This container's directory on the host, where the runtime writes the
    /// `hostname`, `hosts` and `resolv.conf` it bind-mounts over the image's
    /// `/etc` files, as docker does. Created if missing. `None` leaves the
    /// image's files as they are.
    pub state_dir: Option<PathBuf>,
}

impl ContainerSpec {
    /// A spec with docker's defaults: root user, cwd `/`, host network, no
    /// binds, writable rootfs, no terminal, no limits; and no state dir.
    pub fn new(id: impl Into<String>, rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        ContainerSpec {
            id: id.into(),
            rootfs: rootfs.into(),
            args,
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: PathBuf::from("/"),
            user: User::root(),
            hostname: String::new(),
            network: NetworkMode::Host,
            binds: Vec::new(),
            read_only_rootfs: false,
            tty: false,
            resources: Resources::default(),
            state_dir: None,
        }
    }

    /// The hostname the container gets.
    pub fn effective_hostname(&self) -> String {
        if self.hostname.is_empty() {
            self.id.chars().take(12).collect()
        } else {
            self.hostname.clone()
        }
    }

    /// The environment the process gets: `env` plus docker's defaults for
    /// PATH, HOSTNAME, HOME and (with a terminal) TERM where missing.
    pub fn effective_env(&self) -> Vec<String> {
        let mut env = self.env.clone();
        let has = |env: &[String], key: &str| {
            env.iter()
                .any(|kv| kv.split_once('=').is_some_and(|(k, _)| k == key))
        };
        if !has(&env, "PATH") {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if !has(&env, "HOSTNAME") {
            env.push(format!("HOSTNAME={}", self.effective_hostname()));
        }
        if !has(&env, "HOME") {
            let home = self.user.home.as_deref().unwrap_or(Path::new("/"));
            env.push(format!("HOME={}", home.display()));
        }
        if self.tty && !has(&env, "TERM") {
            env.push("TERM=xterm".to_string());
        }
        env
    }

    /// Checks what can be checked before anything is started.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |field, reason: String| Err(RuntimeError::InvalidSpec { field, reason });
        let id_ok = self
            .id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && self.id.len() <= 128;
        if !id_ok {
            return invalid(
                "id",
                format!("{:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*", self.id),
            );
        }
        if !self.rootfs.is_absolute() || !self.rootfs.is_dir() {
            return invalid(
                "rootfs",
                format!(
                    "{} is not an absolute path to a directory",
                    self.rootfs.display()
                ),
            );
        }
        if self.args.is_empty() || self.args[0].is_empty() {
            return invalid("args", "no command given".into());
        }
        let nul = |s: &String| s.contains('\0');
        if self.args.iter().any(nul) || self.env.iter().any(nul) {
            return invalid("args/env", "contains a NUL byte".into());
        }
        if let Some(bad) = self.env.iter().find(|kv| !kv.contains('=')) {
            return invalid("env", format!("{bad:?} is not K=V"));
        }
        if !self.cwd.is_absolute() {
            return invalid("cwd", format!("{} is not absolute", self.cwd.display()));
        }
        for bind in &self.binds {
            if !bind.source.is_absolute() || !bind.destination.is_absolute() {
                return invalid(
                    "binds",
                    format!(
                        "{} -> {}: both paths must be absolute",
                        bind.source.display(),
                        bind.destination.display()
                    ),
                );
            }
            if !bind.source.exists() {
                return invalid("binds", format!("{} does not exist", bind.source.display()));
            }
        }
        if let Some(dir) = self.state_dir.as_ref().filter(|d| !d.is_absolute()) {
            return invalid("state_dir", format!("{} is not absolute", dir.display()));
        }
        if let Some(cpus) = self.resources.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return invalid("resources.cpus", format!("{cpus} is not a positive number"));
        }
        if self.resources.pids_limit == Some(0) || self.resources.memory_bytes == Some(0) {
            return invalid("resources", "limits must be positive".into());
        }
        Ok(())
    }
}

/// The identity the container's process runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// Home directory from the rootfs's passwd file, used for HOME when the
    /// environment has none.
    pub home: Option<PathBuf>,
}

impl User {
    /// uid 0, gid 0, no supplementary groups, home `/root`.
    pub fn root() -> Self {
        User {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: Some(PathBuf::from("/root")),
        }
    }
}

/// Which network namespace the container uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// Share the host's network namespace (`--net host`).
    Host,
    /// A new network namespace with only the loopback interface, up (`--net none`).
    None,
}

/// A host path mounted into the container (`-v SRC:DST[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindMount {
    /// Absolute host path (file or directory).
    pub source: PathBuf,
    /// Absolute path inside the container; created if missing.
    pub destination: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
}

/// cgroup limits; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in bytes (`--memory`); swap is not allowed on top.
    pub memory_bytes: Option<u64>,
    /// CPU quota in CPUs (`--cpus 1.5`), enforced with CFS quota per 100 ms.
    pub cpus: Option<f64>,
    /// Maximum number of tasks (`--pids-limit`).
    pub pids_limit: Option<u64>,
}

impl Resources {
    /// Whether any limit is set (and so a cgroup is needed).
    pub fn any(&self) -> bool {
        self.memory_bytes.is_some() || self.cpus.is_some() || self.pids_limit.is_some()
    }
}

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The exit code `docker run` would give: the code, or 128 + the signal.
    pub fn docker_exit_code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec::new("web-1", "/", vec!["sh".into()])
    }

    #[test]
    fn docker_exit_codes() {
        assert_eq!(ExitStatus::Code(7).docker_exit_code(), 7);
        assert_eq!(ExitStatus::Signaled(9).docker_exit_code(), 137);
    }

    #[test]
    fn env_defaults_fill_only_missing_keys() {
        let mut s = spec();
        s.env = vec!["PATH=/x".into(), "HOME=/h".into()];
        s.tty = true;
        let env = s.effective_env();
        assert_eq!(env, ["PATH=/x", "HOME=/h", "HOSTNAME=web-1", "TERM=xterm"]);
    }

    #[test]
    fn hostname_defaults_to_short_id() {
        let mut s = spec();
        s.id = "0123456789abcdef".into();
        assert_eq!(s.effective_hostname(), "0123456789ab");
        s.hostname = "box".into();
        assert_eq!(s.effective_hostname(), "box");
    }

    #[test]
    fn validation_rejects_bad_specs() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.id = "../etc".into();
        assert!(matches!(
            s.validate(),
            Err(RuntimeError::InvalidSpec { field: "id", .. })
        ));
        let mut s = spec();
        s.args.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.cwd = "rel".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.env = vec!["NOEQUALS".into()];
        assert!(s.validate().is_err());
        let mut s = spec();
        s.resources.cpus = Some(f64::NAN);
        assert!(s.validate().is_err());
        let mut s = spec();
        s.state_dir = Some("relative".into());
        assert!(s.validate().is_err());
    }
}
