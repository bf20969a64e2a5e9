//! `run`: the parent side. Starts the init in new namespaces, puts it in the
//! container's cgroups, hands it the spec, relays the terminal and signals,
//! and turns what the init reports into an exit status or an error.
//!
//! The init must be PID 1 of a new PID namespace. `unshare(CLONE_NEWPID)`
//! only affects the children of the calling *thread*, so the calling thread
//! unshares, spawns the init (which becomes PID 1) and immediately `setns`es
//! back to its own PID namespace: no other thread is affected, the caller may
//! be multi-threaded (tokio, …), and `std::process::Command` still handles
//! the spawn. The other namespaces are unshared by the child itself between
//! fork and exec. (`clone(2)` with all flags at once would need a raw stack
//! and running Rust code in a vfork-like child; this keeps the child to a few
//! syscalls.)

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::Signal;
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, shutdown, socketpair,
};

use crate::cgroup::ContainerCgroup;
use crate::error::RuntimeError;
use crate::init::INIT_MARKER;
use crate::protocol::{self, ExecFailure, InitMessage};
use crate::pty::TtyRelay;
use crate::signals::SignalForwarding;
use crate::spec::{ContainerSpec, ExitStatus, NetworkMode};

/// Runs the container described by `spec` in the foreground and returns how
/// its process ended.
///
/// `init_exe` is a binary that calls [`crate::init_main_if_requested`] first
/// thing in `main` (usually the caller's own executable); it is re-executed
/// as the container's init. stdin, stdout and stderr are the caller's (or a
/// terminal relayed to them with `tty`). While the container runs, SIGINT,
/// SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the caller are
/// forwarded to it. Needs root (CAP_SYS_ADMIN and friends).
pub fn run(spec: &ContainerSpec, init_exe: &Path) -> Result<ExitStatus, RuntimeError> {
    spec.validate()?;
    let span = tracing::info_span!("container", id = %spec.id);
    let _entered = span.enter();
    let mut init_spec = spec.clone();
    init_spec.env = spec.effective_env();
    init_spec.hostname = spec.effective_hostname();
    init_spec.rootfs = spec
        .rootfs
        .canonicalize()
        .map_err(|e| RuntimeError::InvalidSpec {
            field: "rootfs",
            reason: format!("{}: {e}", spec.rootfs.display()),
        })?;
    crate::etc_files::add_binds(&mut init_spec)?;
    let spec_json = serde_json::to_vec(&init_spec).map_err(|e| RuntimeError::InvalidSpec {
        field: "paths",
        reason: format!("not representable as UTF-8: {e}"),
    })?;

    let cgroup = ContainerCgroup::create(&spec.id, &spec.resources)?;
    let host_err = |op| {
        move |e: Errno| RuntimeError::HostSetup {
            op,
            source: e.into(),
        }
    };
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(host_err("socketpair"))?;
    let mut init = spawn_init(init_exe, theirs, spec.network)?;
    tracing::debug!(init_pid = init.child.id(), "container init started");
    if let Some(cgroup) = &cgroup {
        cgroup.add_process(init.child.id())?;
    }
    let forwarding = SignalForwarding::install(init.child.id())?;

    send_all(&ours, &spec_json).map_err(|source| RuntimeError::InitChannel {
        op: "send spec",
        source,
    })?;
    shutdown(ours.as_raw_fd(), Shutdown::Write).map_err(host_err("shutdown control socket"))?;

    let mut report = Report::default();
    let received = protocol::receive_all(ours.as_fd(), |message, fd| match message {
        InitMessage::PtyMaster => match fd {
            Some(master) => report.relay = Some(TtyRelay::start(master)),
            None => {
                report.relay = Some(Err(RuntimeError::InitChannel {
                    op: "receive terminal",
                    source: std::io::Error::from_raw_os_error(libc::EBADF),
                }))
            }
        },
        other => report.messages.push(other),
    });
    if received.is_err() {
        // The container cannot report to us any more: stop it.
        let _ = init.child.kill();
    }
    let status = init.wait()?;
    drop(forwarding);
    let relay_error = match report.relay.take() {
        Some(Ok(relay)) => {
            relay.finish();
            None
        }
        Some(Err(e)) => Some(e),
        None => None,
    };
    if let Some(cgroup) = cgroup {
        cgroup.remove()?;
    }
    received.map_err(|source| RuntimeError::InitChannel {
        op: "receive status",
        source,
    })?;
    if let Some(e) = relay_error {
        return Err(e);
    }
    report.into_result(status)
}

/// What the container reported.
#[derive(Default)]
struct Report {
    messages: Vec<InitMessage>,
    relay: Option<Result<TtyRelay, RuntimeError>>,
}

impl Report {
    /// A setup failure wins over an exec failure, which wins over the exit
    /// status; without any, the init's own fate decides.
    fn into_result(
        self,
        init_status: std::process::ExitStatus,
    ) -> Result<ExitStatus, RuntimeError> {
        let mut exited = None;
        let mut exec_failed = None;
        for message in self.messages {
            match message {
                InitMessage::SetupFailed { step, message } => {
                    return Err(RuntimeError::ContainerSetup { step, message });
                }
                InitMessage::ExecFailed {
                    command,
                    failure,
                    errno,
                } => {
                    exec_failed.get_or_insert((command, failure, errno));
                }
                InitMessage::Exited { status } => exited = Some(status),
                InitMessage::PtyMaster => {}
            }
        }
        if let Some((command, failure, errno)) = exec_failed {
            return Err(match failure {
                ExecFailure::NotFound => RuntimeError::CommandNotFound { command },
                ExecFailure::NotExecutable => RuntimeError::NotExecutable {
                    command,
                    errno: Errno::from_raw(errno),
                },
            });
        }
        match (exited, init_status.signal(), init_status.code()) {
            (Some(status), _, _) => Ok(status),
            // The init itself was killed (e.g. SIGKILL from the host).
            (None, Some(signal), _) => Ok(ExitStatus::Signaled(signal)),
            (None, None, code) => Err(RuntimeError::InitDied {
                code: code.unwrap_or(-1),
            }),
        }
    }
}

/// The init process; killed and reaped if `run` leaves early.
struct InitProcess {
    child: Child,
    reaped: bool,
}

impl InitProcess {
    fn wait(&mut self) -> Result<std::process::ExitStatus, RuntimeError> {
        let status = self
            .child
            .wait()
            .map_err(|source| RuntimeError::HostSetup {
                op: "wait for container init",
                source,
            })?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for InitProcess {
    fn drop(&mut self) {
        if !self.reaped {
            // Killing PID 1 of the namespace kills the whole container.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `init_exe` as PID 1 of new PID, mount, UTS, IPC (and network)
/// namespaces, with `socket` as its control socket.
fn spawn_init(
    init_exe: &Path,
    socket: OwnedFd,
    network: NetworkMode,
) -> Result<InitProcess, RuntimeError> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let fd = socket.as_raw_fd();
    let mut command = Command::new(init_exe);
    command.arg(INIT_MARKER).arg(fd.to_string()).env_clear();
    // SAFETY: runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: these are plain syscalls that
    // neither allocate nor take locks.
    unsafe {
        command.pre_exec(move || {
            // Out of the caller's session: the caller's terminal signals
            // reach the container only once, through forwarding.
            nix::unistd::setsid()?;
            unshare(flags)?;
            // The container dies with the thread that runs it.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // Let the control socket survive the exec.
            Errno::result(libc::fcntl(fd, libc::F_SETFD, 0))?;
            Ok(())
        });
    }
    let pid_namespace = ChildPidNamespace::unshare()?;
    let spawned = command.spawn();
    pid_namespace.restore()?;
    let child = spawned.map_err(|source| RuntimeError::SpawnInit {
        init_exe: init_exe.to_path_buf(),
        source,
    })?;
    Ok(InitProcess {
        child,
        reaped: false,
    })
}

/// The calling thread's children go to a new PID namespace until restored.
struct ChildPidNamespace {
    original: Option<File>,
}

impl ChildPidNamespace {
    fn unshare() -> Result<Self, RuntimeError> {
        let original =
            File::open("/proc/thread-self/ns/pid").map_err(|source| RuntimeError::HostSetup {
                op: "open /proc/thread-self/ns/pid",
                source,
            })?;
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| RuntimeError::HostSetup {
            op: "unshare(CLONE_NEWPID)",
            source: e.into(),
        })?;
        Ok(ChildPidNamespace {
            original: Some(original),
        })
    }

    fn restore(mut self) -> Result<(), RuntimeError> {
        match self.original.take() {
            Some(original) => {
                setns(&original, CloneFlags::CLONE_NEWPID).map_err(|e| RuntimeError::HostSetup {
                    op: "setns back to the caller's PID namespace",
                    source: e.into(),
                })
            }
            None => Ok(()),
        }
    }
}

impl Drop for ChildPidNamespace {
    fn drop(&mut self) {
        if let Some(original) = self.original.take() {
            let _ = setns(&original, CloneFlags::CLONE_NEWPID);
        }
    }
}

/// Writes all of `bytes` without raising SIGPIPE if the init is gone.
fn send_all(socket: &OwnedFd, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match nix::sys::socket::send(socket.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
