//! The one error type of the runtime, and its mapping to docker exit codes.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Everything that can go wrong while starting or running a container.
///
/// [`RuntimeError::docker_exit_code`] maps each variant to the exit code
/// `docker run` uses for it: 127 when the command does not exist, 126 when it
/// exists but cannot be executed, 125 for every failure of the runtime itself.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container spec is unusable as given.
    #[error("invalid container spec: {field}: {reason}")]
    InvalidSpec {
        /// The offending field of the spec.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The command was not found (no such file, or not on the container's PATH).
    #[error("{command}: executable file not found in the container (PATH or path)")]
    CommandNotFound {
        /// The command as given in `args[0]`.
        command: String,
    },
    /// The command exists but the kernel refused to execute it.
    #[error("{command}: cannot execute: {errno}")]
    NotExecutable {
        /// The command as given in `args[0]`.
        command: String,
        /// Why `execve` failed (EACCES, ENOEXEC, …).
        errno: Errno,
    },
    /// A setup step inside the container failed (mounts, pivot_root, user, …);
    /// reported by the container's init.
    #[error("container setup failed: {step}: {message}")]
    ContainerSetup {
        /// The step that failed, e.g. `mount proc on /proc`.
        step: String,
        /// The error it failed with.
        message: String,
    },
    /// Starting the container's init process failed.
    #[error("starting container init {init_exe}: {source}")]
    SpawnInit {
        /// The executable that was to become the container's init.
        init_exe: PathBuf,
        /// The error from spawning it.
        source: io::Error,
    },
    /// Preparing the container in the calling process failed (namespaces,
    /// control socket, signal handlers).
    #[error("{op}: {source}")]
    HostSetup {
        /// What was attempted.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Talking to the container's init over the control socket failed.
    #[error("control channel to the container init: {op}: {source}")]
    InitChannel {
        /// What was attempted (send spec, receive status, …).
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The container's init ended without reporting the workload's status.
    #[error("container init exited with code {code} without reporting a status")]
    InitDied {
        /// The init's own exit code.
        code: i32,
    },
    /// A resource limit was asked for but its cgroup controller is not
    /// available on this host (neither on cgroup v2 nor on a v1 hierarchy).
    #[error("cgroup controller {controller:?} is not available on this host (needed for {limit})")]
    CgroupControllerUnavailable {
        /// The controller, e.g. `memory`.
        controller: &'static str,
        /// The limit that needs it, e.g. `--memory`.
        limit: &'static str,
    },
    /// Creating, configuring, joining or removing a cgroup failed.
    #[error("cgroup {path}: {op}: {source}")]
    Cgroup {
        /// The cgroup directory or file.
        path: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Reading a file of the container's root filesystem failed.
    #[error("reading {path} in the container rootfs: {source}")]
    RootfsFile {
        /// The path inside the rootfs.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing the container's `hostname`, `hosts` or `resolv.conf`, or
    /// preparing its mount point in the rootfs, failed.
    #[error("{op} {path}: {source}")]
    EtcFile {
        /// What was attempted.
        op: &'static str,
        /// The file: in the state dir, on the host, or in the container.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `resolve_user` could not find the named user.
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UserNotFound {
        /// The user name.
        name: String,
    },
    /// `resolve_user` could not find the named group.
    #[error("unable to find group {name}: no matching entries in group file")]
    GroupNotFound {
        /// The group name.
        name: String,
    },
    /// The terminal could not be set up or relayed.
    #[error("terminal: {op}: {source}")]
    Terminal {
        /// What was attempted.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Writing an OCI bundle failed.
    #[error("OCI bundle {path}: {reason}")]
    OciBundle {
        /// The bundle directory or file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Running an external OCI runtime (runc, crun) failed.
    #[error("OCI runtime {runtime}: {op}: {source}")]
    OciRuntime {
        /// The runtime binary.
        runtime: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl RuntimeError {
    /// The exit code `docker run` gives for this error: 127 for a missing
    /// command, 126 for one that cannot be executed, 125 for the rest.
    pub fn docker_exit_code(&self) -> i32 {
        match self {
            RuntimeError::CommandNotFound { .. } => 127,
            RuntimeError::NotExecutable { .. } => 126,
            _ => 125,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_docker() {
        let missing = RuntimeError::CommandNotFound {
            command: "x".into(),
        };
        let noexec = RuntimeError::NotExecutable {
            command: "x".into(),
            errno: Errno::EACCES,
        };
        let other = RuntimeError::InitDied { code: 1 };
        assert_eq!(missing.docker_exit_code(), 127);
        assert_eq!(noexec.docker_exit_code(), 126);
        assert_eq!(other.docker_exit_code(), 125);
    }
}
