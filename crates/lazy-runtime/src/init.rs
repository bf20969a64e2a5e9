//! The container's init: PID 1 of the new PID namespace.
//!
//! It reads the spec from the control socket, builds the container's mount
//! table, hostname and network, forks the workload, and then stays as a tiny
//! reaper: it forwards signals to the workload, reaps every zombie, and
//! reports the workload's status to the parent. When it exits, the kernel
//! kills whatever is left in the PID namespace.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::protocol::{self, InitMessage};
use crate::spec::{ContainerSpec, ExitStatus, NetworkMode};

/// `argv[1]` that makes a binary run as the container init.
pub const INIT_MARKER: &str = "__lazy-runtime-init";

/// Signals the init passes on to the workload.
pub const FORWARDED_SIGNALS: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// A failed setup step inside the container.
#[derive(Debug)]
pub struct SetupError {
    /// What was being done, with the path involved.
    pub step: String,
    /// The error.
    pub source: io::Error,
}

/// Attaches the step to an error.
pub trait Step<T> {
    /// Names the failing step.
    fn step(self, step: &str) -> Result<T, SetupError>;
    /// Names the failing step and its path.
    fn step_path(self, step: &str, path: &Path) -> Result<T, SetupError>;
}

impl<T, E: Into<io::Error>> Step<T> for Result<T, E> {
    fn step(self, step: &str) -> Result<T, SetupError> {
        self.map_err(|e| SetupError {
            step: step.to_string(),
            source: e.into(),
        })
    }

    fn step_path(self, step: &str, path: &Path) -> Result<T, SetupError> {
        self.map_err(|e| SetupError {
            step: format!("{step} {}", path.display()),
            source: e.into(),
        })
    }
}

/// Runs the init with the control socket `fd`; returns the init's exit code.
pub fn main(fd: RawFd) -> i32 {
    // SAFETY: the parent passed this fd to us open and not close-on-exec;
    // nothing else in this fresh process owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let prepared = prepare_process(&socket);
    let spec = match prepared.and_then(|()| read_spec(&socket)) {
        Ok(spec) => spec,
        Err(e) => return report_setup_failure(&socket, &e),
    };
    match start(&spec, &socket) {
        Ok(status) => {
            let message = InitMessage::Exited { status };
            // The parent falls back on our own exit status if this fails.
            let _ = protocol::send(socket.as_fd(), &message, None);
            status.docker_exit_code()
        }
        Err(e) => report_setup_failure(&socket, &e),
    }
}

/// Makes the socket close-on-exec again and the process undumpable, so the
/// workload can reach neither it nor our executable through /proc/1.
fn prepare_process(socket: &OwnedFd) -> Result<(), SetupError> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(socket, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).step("set close-on-exec")?;
    nix::sys::prctl::set_dumpable(false).step("prctl(PR_SET_DUMPABLE)")?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    Ok(())
}

/// Reads the JSON spec up to the parent's shutdown.
fn read_spec(socket: &OwnedFd) -> Result<ContainerSpec, SetupError> {
    let mut bytes = Vec::new();
    let mut file = std::fs::File::from(socket.try_clone().step("dup control socket")?);
    file.read_to_end(&mut bytes).step("read spec")?;
    serde_json::from_slice(&bytes)
        .map_err(io::Error::other)
        .step("decode spec")
}

/// Tells the parent which step failed; returns docker's 125.
fn report_setup_failure(socket: &OwnedFd, error: &SetupError) -> i32 {
    let message = InitMessage::SetupFailed {
        step: error.step.clone(),
        message: error.source.to_string(),
    };
    let _ = protocol::send(socket.as_fd(), &message, None);
    125
}

/// Sets up the container, forks the workload and reaps until it ends.
fn start(spec: &ContainerSpec, socket: &OwnedFd) -> Result<ExitStatus, SetupError> {
    nix::unistd::sethostname(&spec.hostname).step("sethostname")?;
    if spec.network == NetworkMode::None {
        crate::network::loopback_up()?;
    }
    crate::mounts::setup_before_pivot(spec)?;
    crate::mounts::setup_after_pivot(spec)?;
    let slave = if spec.tty {
        let (master, slave) = crate::pty::open_in_container(spec.user.uid)?;
        protocol::send(
            socket.as_fd(),
            &InitMessage::PtyMaster,
            Some(master.as_raw_fd()),
        )
        .step("send terminal to parent")?;
        Some(slave)
    } else {
        None
    };

    let mut waited_for = SigSet::empty();
    for signal in FORWARDED_SIGNALS {
        waited_for.add(signal);
    }
    waited_for.add(Signal::SIGCHLD);
    let mut previous_mask = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&waited_for),
        Some(&mut previous_mask),
    )
    .step("block signals")?;

    // SAFETY: the init is single-threaded (it is the first thing the binary
    // runs, see `init_main_if_requested`), so the child may do anything.
    match unsafe { fork() }.step("fork workload")? {
        ForkResult::Child => crate::workload::exec(spec, socket, slave, &previous_mask),
        ForkResult::Parent { child } => {
            drop(slave);
            reap_until_exit(child, &waited_for)
        }
    }
}

/// Forwards signals to `workload` and reaps all children until it exits.
fn reap_until_exit(workload: Pid, waited_for: &SigSet) -> Result<ExitStatus, SetupError> {
    loop {
        let signal = match waited_for.wait() {
            Ok(signal) => signal,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).step("sigwait"),
        };
        if signal != Signal::SIGCHLD {
            // The workload may be gone already; its exit shows up as SIGCHLD.
            let _ = kill(workload, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == workload => {
                    return Ok(ExitStatus::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == workload => {
                    return Ok(ExitStatus::Signaled(signal as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).step("waitpid"),
            }
        }
    }
}
