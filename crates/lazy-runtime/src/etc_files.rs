//! The container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`,
//! as docker makes them: generated per container in its state dir on the
//! host and bind-mounted over the image's files. Neither the image nor the
//! host's files are modified.

use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::RuntimeError;
use crate::securejoin::secure_join;
use crate::spec::{BindMount, ContainerSpec, NetworkMode};

/// Where the host's own `hosts` and `resolv.conf` are read from.
const HOST_ETC: &str = "/etc";

/// docker's `/etc/hosts` for a container without the host's network.
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n\
    ::1\tlocalhost ip6-localhost ip6-loopback\n\
    fe00::0\tip6-localnet\n\
    ff00::0\tip6-mcastprefix\n\
    ff02::1\tip6-allnodes\n\
    ff02::2\tip6-allrouters\n";

/// One generated file; its name is the same in the state dir and in `/etc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EtcFile {
    Hostname,
    Hosts,
    ResolvConf,
}

impl EtcFile {
    const ALL: [EtcFile; 3] = [EtcFile::Hostname, EtcFile::Hosts, EtcFile::ResolvConf];

    fn name(self) -> &'static str {
        match self {
            EtcFile::Hostname => "hostname",
            EtcFile::Hosts => "hosts",
            EtcFile::ResolvConf => "resolv.conf",
        }
    }

    fn destination(self) -> PathBuf {
        Path::new("/etc").join(self.name())
    }

    /// The file's content for `spec`, with the host's files read from
    /// `host_etc`.
    fn content(self, spec: &ContainerSpec, host_etc: &Path) -> io::Result<Vec<u8>> {
        let hostname = spec.effective_hostname();
        match (self, spec.network) {
            (EtcFile::Hostname, _) => Ok(format!("{hostname}\n").into_bytes()),
            // With the host's network the host's names are the right ones
            // (docker copies the file too); a host without one gets ours.
            (EtcFile::Hosts, NetworkMode::Host) => Ok(read_host_file(&host_etc.join("hosts"))?
                .unwrap_or_else(|| default_hosts(&hostname))),
            // Docker has no address to give the hostname here; loopback
            // keeps `hostname -i`, sudo and friends from failing to resolve.
            (EtcFile::Hosts, NetworkMode::None) => Ok(default_hosts(&hostname)),
            // A copy in both modes, as docker: with the host's network the
            // host's resolvers (even 127.0.0.x ones) are reachable; with
            // none nothing is, but docker still copies the search domains
            // and options. A host without the file gives an empty one.
            (EtcFile::ResolvConf, _) => {
                Ok(read_host_file(&host_etc.join("resolv.conf"))?.unwrap_or_default())
            }
        }
    }
}

/// Writes the container's `hostname`, `hosts` and `resolv.conf` into
/// `spec.state_dir` (created if missing), makes their mount points in the
/// rootfs regular files, and puts their bind mounts before the user's. A
/// user bind on the same path, or on a directory above it, wins: that file
/// is left out. Without a state dir, nothing.
pub fn add_binds(spec: &mut ContainerSpec) -> Result<(), RuntimeError> {
    let ours = prepare_with_host_etc(spec, Path::new(HOST_ETC))?;
    // Ours first: a user bind above one of them then hides it.
    spec.binds.splice(0..0, ours);
    Ok(())
}

fn prepare_with_host_etc(
    spec: &ContainerSpec,
    host_etc: &Path,
) -> Result<Vec<BindMount>, RuntimeError> {
    let Some(state_dir) = &spec.state_dir else {
        return Ok(Vec::new());
    };
    let err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::EtcFile { op, path, source }
    };
    std::fs::create_dir_all(state_dir).map_err(err("create state dir", state_dir))?;
    let mut binds = Vec::new();
    for file in EtcFile::ALL {
        let destination = file.destination();
        if spec
            .binds
            .iter()
            .any(|user| destination.starts_with(&user.destination))
        {
            continue;
        }
        let source = state_dir.join(file.name());
        let content = file
            .content(spec, host_etc)
            .map_err(err("read the host's", &host_etc.join(file.name())))?;
        write_world_readable(&source, &content).map_err(err("write", &source))?;
        mount_point(&spec.rootfs, &destination)
            .map_err(err("prepare mount point in the rootfs for", &destination))?;
        binds.push(BindMount {
            source,
            destination,
            // docker: writable, unless the whole rootfs is read-only.
            read_only: spec.read_only_rootfs,
        });
    }
    Ok(binds)
}

/// The hosts file for a container with its own network namespace.
fn default_hosts(hostname: &str) -> Vec<u8> {
    format!("{DEFAULT_HOSTS}127.0.1.1\t{hostname}\n").into_bytes()
}

/// The content of a host file; `None` if it does not exist.
fn read_host_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `content` to `path` with mode 0644 whatever the caller's umask:
/// a container running as another user must be able to read it.
fn write_world_readable(path: &Path, content: &[u8]) -> io::Result<()> {
    std::fs::write(path, content)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Makes `destination` (a container path under `/etc`) a regular file in
/// `root` to mount over, and returns its host path.
///
/// The directory is resolved inside the rootfs (an image's `/etc` may be a
/// symlink). The file itself, if a symlink, is replaced by an empty file
/// instead of followed: images link `/etc/resolv.conf` to
/// `../run/systemd/resolve/stub-resolv.conf` or worse, and following would
/// put our file over whatever the link names (the image's `/etc/shadow`, or
/// a path a tmpfs later hides). This writes to the container's writable
/// layer only; no container process exists yet to race with.
fn mount_point(root: &Path, destination: &Path) -> io::Result<PathBuf> {
    let (Some(parent), Some(name)) = (destination.parent(), destination.file_name()) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let dir = secure_join(root, parent)?;
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(name);
    match std::fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_file() => return Ok(target),
        Ok(meta) if meta.is_symlink() => std::fs::remove_file(&target)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", target.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // O_EXCL: never follows a symlink, should one appear after all.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A rootfs, a state dir and a fake host `/etc` in one temp dir.
    struct Dirs {
        top: tempfile::TempDir,
    }

    impl Dirs {
        fn new() -> Self {
            let top = tempfile::tempdir().unwrap();
            for dir in ["rootfs/etc", "host-etc", "outside"] {
                std::fs::create_dir_all(top.path().join(dir)).unwrap();
            }
            std::fs::write(top.path().join("host-etc/hosts"), "10.0.0.1 host-entry\n").unwrap();
            std::fs::write(
                top.path().join("host-etc/resolv.conf"),
                "nameserver 127.0.0.53\n",
            )
            .unwrap();
            Dirs { top }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.top.path().join(rel)
        }

        fn spec(&self, network: NetworkMode) -> ContainerSpec {
            let mut spec = ContainerSpec::new("c1", self.path("rootfs"), vec!["sh".into()]);
            spec.hostname = "box".into();
            spec.network = network;
            spec.state_dir = Some(self.path("state"));
            spec
        }

        fn prepare(&self, spec: &ContainerSpec) -> Vec<BindMount> {
            prepare_with_host_etc(spec, &self.path("host-etc")).unwrap()
        }

        fn state(&self, name: &str) -> String {
            std::fs::read_to_string(self.path("state").join(name)).unwrap()
        }
    }

    #[test]
    fn host_network_copies_the_hosts_files() {
        let dirs = Dirs::new();
        let binds = dirs.prepare(&dirs.spec(NetworkMode::Host));
        let destinations: Vec<_> = binds.iter().map(|b| b.destination.clone()).collect();
        assert_eq!(
            destinations,
            ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"].map(PathBuf::from)
        );
        assert!(binds.iter().all(|b| !b.read_only));
        assert_eq!(binds[1].source, dirs.path("state/hosts"));
        assert_eq!(dirs.state("hostname"), "box\n");
        assert_eq!(dirs.state("hosts"), "10.0.0.1 host-entry\n");
        assert_eq!(dirs.state("resolv.conf"), "nameserver 127.0.0.53\n");
        for name in ["hostname", "hosts", "resolv.conf"] {
            let point = dirs.path("rootfs/etc").join(name);
            assert!(point.is_file(), "mount point {name} created");
            let mode = std::fs::metadata(dirs.path("state").join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn own_network_gets_loopback_names_and_the_hostname() {
        let dirs = Dirs::new();
        let mut spec = dirs.spec(NetworkMode::None);
        spec.read_only_rootfs = true;
        let binds = dirs.prepare(&spec);
        assert!(binds.iter().all(|b| b.read_only), "ro with a ro rootfs");
        let hosts = dirs.state("hosts");
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost "));
        assert!(hosts.ends_with("127.0.1.1\tbox\n"), "{hosts}");
        assert_eq!(dirs.state("resolv.conf"), "nameserver 127.0.0.53\n");
    }

    #[test]
    fn missing_host_files_give_defaults() {
        let dirs = Dirs::new();
        std::fs::remove_file(dirs.path("host-etc/hosts")).unwrap();
        std::fs::remove_file(dirs.path("host-etc/resolv.conf")).unwrap();
        dirs.prepare(&dirs.spec(NetworkMode::Host));
        assert!(dirs.state("hosts").contains("127.0.0.1\tlocalhost\n"));
        assert_eq!(dirs.state("resolv.conf"), "");
    }

    #[test]
    fn user_binds_win() {
        let dirs = Dirs::new();
        let mut spec = dirs.spec(NetworkMode::Host);
        spec.binds = vec![BindMount {
            source: dirs.path("outside"),
            destination: "/etc//hosts".into(),
            read_only: false,
        }];
        let binds = dirs.prepare(&spec);
        let names: Vec<_> = binds.iter().map(|b| b.destination.clone()).collect();
        assert_eq!(
            names,
            ["/etc/hostname", "/etc/resolv.conf"].map(PathBuf::from)
        );
        assert!(!dirs.path("state/hosts").exists());

        spec.binds[0].destination = "/etc".into();
        assert!(dirs.prepare(&spec).is_empty(), "a bind over /etc hides all");
        spec.state_dir = None;
        spec.binds.clear();
        assert!(dirs.prepare(&spec).is_empty(), "no state dir, no files");
    }

    #[test]
    fn symlinked_mount_points_are_replaced_not_followed() {
        let dirs = Dirs::new();
        let etc = dirs.path("rootfs/etc");
        let victim = dirs.path("outside/victim");
        std::fs::write(&victim, "host data\n").unwrap();
        // Absolute to a host path, relative climbing out, and inside the
        // rootfs to a path a tmpfs may later hide.
        symlink(&victim, etc.join("hostname")).unwrap();
        symlink("../../outside/victim", etc.join("hosts")).unwrap();
        symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            etc.join("resolv.conf"),
        )
        .unwrap();
        dirs.prepare(&dirs.spec(NetworkMode::None));
        for name in ["hostname", "hosts", "resolv.conf"] {
            let meta = std::fs::symlink_metadata(etc.join(name)).unwrap();
            assert!(meta.is_file() && meta.len() == 0, "{name} replaced");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host data\n");
        assert!(!dirs.path("rootfs/run").exists(), "link target not created");
    }

    #[test]
    fn symlinked_etc_is_resolved_inside_the_rootfs() {
        let dirs = Dirs::new();
        std::fs::remove_dir(dirs.path("rootfs/etc")).unwrap();
        symlink("/../../outside", dirs.path("rootfs/etc")).unwrap();
        dirs.prepare(&dirs.spec(NetworkMode::None));
        assert!(dirs.path("rootfs/outside/hosts").is_file());
        assert_eq!(std::fs::read_dir(dirs.path("outside")).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let dirs = Dirs::new();
        std::fs::create_dir(dirs.path("rootfs/etc/hosts")).unwrap();
        let err = prepare_with_host_etc(&dirs.spec(NetworkMode::None), &dirs.path("host-etc"))
            .unwrap_err();
        assert!(err.to_string().contains("/etc/hosts"), "{err}");
    }
}
