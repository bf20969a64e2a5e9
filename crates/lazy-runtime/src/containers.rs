//! Containers started by `lazyrun`: one directory each under the configured
//! `containers_dir`, holding the overlay's upper, work and merged dirs and
//! `container.json`. `lazyctl ps` lists them, `lazyctl rm` removes them,
//! including those left behind by a crash.

use std::io::Read;
use std::path::{Path, PathBuf};

use lazy_statefile::{Durability, write_atomic};
use nix::mount::{MntFlags, umount2};
use serde::{Deserialize, Serialize};

const RECORD: &str = "container.json";

/// Why a container could not be created, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A file operation on the store failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted: "creating", "saving", …
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--name` is taken.
    #[error(
        "the container name {0:?} is already in use; remove it with `lazyctl rm {0}` or choose another --name"
    )]
    NameInUse(String),
    /// `--name` breaks docker's naming rule.
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    InvalidName(String),
    /// No container has this name or id.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An id prefix matches several containers.
    #[error("{0} matches several containers; give more of the id")]
    Ambiguous(String),
    /// Removing a running container without force.
    #[error("container {0} is running; stop it first or use rm -f")]
    Running(String),
    /// The container's lazyrun survived SIGKILL for 10 s.
    #[error("container {name}: lazyrun (pid {pid}) did not die")]
    WontDie {
        /// The container.
        name: String,
        /// Its lazyrun process.
        pid: u32,
    },
    /// A mount of the container could not be removed.
    #[error("unmounting {path}: {errno}")]
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// Why.
        errno: nix::errno::Errno,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.to_owned();
    move |source| ContainerError::Io {
        action,
        path,
        source,
    }
}

/// What `lazyrun` remembers of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique name (default: the first 12 digits of the id).
    pub name: String,
    /// The image as resolved.
    pub image: String,
    /// argv.
    pub command: Vec<String>,
    /// Unix time of creation.
    pub created: u64,
    /// The `lazyrun` process that runs it, and that process's start time
    /// (so that a reused pid is not taken for it).
    pub pid: u32,
    /// Start time of `pid` in clock ticks since boot.
    pub pid_start: u64,
    /// Exit code once it exited.
    pub exit_code: Option<i32>,
}

/// A container's state as `ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Its lazyrun process is alive.
    Running,
    /// Exited with a code.
    Exited(i32),
    /// Its lazyrun process is gone without recording an exit (killed, crash).
    Dead,
}

impl ContainerRecord {
    /// Running, exited or dead.
    pub fn state(&self) -> ContainerState {
        match self.exit_code {
            Some(code) => ContainerState::Exited(code),
            None if start_time(self.pid) == Some(self.pid_start) => ContainerState::Running,
            None => ContainerState::Dead,
        }
    }
}

/// The containers directory.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    dir: PathBuf,
}

impl ContainerStore {
    /// The store at `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// A container's directory.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Creates a container directory and record for this process.
    pub fn create(
        &self,
        name: Option<&str>,
        image: &str,
        command: &[String],
    ) -> Result<ContainerRecord, ContainerError> {
        std::fs::create_dir_all(&self.dir).map_err(io_error("creating", &self.dir))?;
        let id = random_id()?;
        let name = match name {
            Some(n) => {
                validate_name(n)?;
                n.to_owned()
            }
            None => id[..12].to_owned(),
        };
        if self.list()?.iter().any(|c| c.name == name) {
            return Err(ContainerError::NameInUse(name));
        }
        let pid = std::process::id();
        let record = ContainerRecord {
            id: id.clone(),
            name,
            image: image.to_owned(),
            command: command.to_vec(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            pid,
            pid_start: start_time(pid).ok_or_else(|| {
                io_error("reading the start time in", Path::new("/proc/self/stat"))(
                    std::io::Error::other("no start time"),
                )
            })?,
            exit_code: None,
        };
        let dir = self.dir_of(&id);
        std::fs::create_dir(&dir).map_err(io_error("creating", &dir))?;
        self.save(&record)?;
        Ok(record)
    }

    /// Writes a record (atomic and durable).
    pub fn save(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let path = self.dir_of(&record.id).join(RECORD);
        let json = serde_json::to_vec_pretty(record).expect("records serialize");
        write_atomic(&path, &json, Durability::Synced).map_err(io_error("saving", &path))
    }

    /// Every container, oldest first; unreadable records are skipped with a
    /// warning.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, ContainerError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading", &self.dir)(e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(io_error("reading", &self.dir))?
                .path()
                .join(RECORD);
            match std::fs::read(&path).map(|b| serde_json::from_slice::<ContainerRecord>(&b)) {
                Ok(Ok(r)) => records.push(r),
                Ok(Err(e)) => tracing::warn!("skipping {}: {e}", path.display()),
                Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
            }
        }
        records.sort_by_key(|r| (r.created, r.id.clone()));
        Ok(records)
    }

    /// The container named `name_or_id` (a name, a full id or an id prefix).
    pub fn find(&self, name_or_id: &str) -> Result<ContainerRecord, ContainerError> {
        let all = self.list()?;
        if let Some(c) = all
            .iter()
            .find(|c| c.name == name_or_id || c.id == name_or_id)
        {
            return Ok(c.clone());
        }
        let prefixed: Vec<_> = all
            .iter()
            .filter(|c| c.id.starts_with(name_or_id))
            .collect();
        match prefixed.as_slice() {
            [one] if !name_or_id.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(ContainerError::NotFound(name_or_id.to_owned())),
            _ => Err(ContainerError::Ambiguous(name_or_id.to_owned())),
        }
    }

    /// Unmounts the container's root filesystem (if mounted) and deletes
    /// its directory. A running container is refused unless `force`, which
    /// kills its lazyrun process (the container's processes die with it).
    pub fn remove(&self, record: &ContainerRecord, force: bool) -> Result<(), ContainerError> {
        if record.state() == ContainerState::Running {
            if !force {
                return Err(ContainerError::Running(record.name.clone()));
            }
            // A pid beyond i32 cannot be a live process: nothing to kill.
            if let Ok(pid) = i32::try_from(record.pid) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while start_time(record.pid) == Some(record.pid_start) {
                if std::time::Instant::now() > deadline {
                    return Err(ContainerError::WontDie {
                        name: record.name.clone(),
                        pid: record.pid,
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let dir = self.dir_of(&record.id);
        unmount_if_mounted(&dir.join("merged"))?;
        std::fs::remove_dir_all(&dir).map_err(io_error("removing", &dir))
    }
}

/// Lazily detaches a mount at `path`; nothing mounted there is fine.
pub fn unmount_if_mounted(path: &Path) -> Result<(), ContainerError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(errno) => Err(ContainerError::Unmount {
            path: path.to_owned(),
            errno,
        }),
    }
}

/// Docker's rule for names.
fn validate_name(name: &str) -> Result<(), ContainerError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128;
    if !ok {
        return Err(ContainerError::InvalidName(name.to_owned()));
    }
    Ok(())
}

fn random_id() -> Result<String, ContainerError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_error("reading", Path::new("/dev/urandom")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A process's start time (field 22 of /proc/PID/stat), if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_find_list_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(dir.path());
        let a = store.create(Some("web"), "img", &["sh".into()]).unwrap();
        assert_eq!(a.state(), ContainerState::Running, "this process runs it");
        assert!(
            store.create(Some("web"), "img", &[]).is_err(),
            "names are unique"
        );
        assert!(store.create(Some("-bad"), "img", &[]).is_err());
        let b = store.create(None, "img", &[]).unwrap();
        assert_eq!(b.name, b.id[..12]);
        assert_eq!(store.find("web").unwrap(), a);
        assert_eq!(store.find(&b.id[..8]).unwrap(), b);
        assert!(store.find("nothing").is_err());
        assert_eq!(store.list().unwrap().len(), 2);
        assert!(store.remove(&a, false).is_err(), "running");
        let mut exited = a.clone();
        exited.exit_code = Some(3);
        store.save(&exited).unwrap();
        assert_eq!(
            store.find("web").unwrap().state(),
            ContainerState::Exited(3)
        );
        store.remove(&exited, false).unwrap();
        let mut dead = b.clone();
        dead.pid_start += 1;
        assert_eq!(dead.state(), ContainerState::Dead);
        store.remove(&dead, false).unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}
