//! Forwarding the caller's signals to the container while `run` waits.
//!
//! Handlers are process-wide: while a container runs, SIGINT, SIGTERM,
//! SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the caller go to the
//! container's init, which passes them to the workload; SIGWINCH resizes
//! the container's terminal. The previous handlers come back afterwards.
//! With several containers at once in one process, signals go to the one
//! started last.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::error::RuntimeError;

/// Host pid of the init that receives forwarded signals (0: none).
static FORWARD_PID: AtomicI32 = AtomicI32::new(0);
/// Master fd of the container's terminal (-1: none).
static PTY_MASTER: AtomicI32 = AtomicI32::new(-1);

/// Signals the caller forwards to the container.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

extern "C" fn forward(signal: libc::c_int) {
    let pid = FORWARD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and touches no memory.
        unsafe { libc::kill(pid, signal) };
    }
}

extern "C" fn resize(_: libc::c_int) {
    let master = PTY_MASTER.load(Ordering::SeqCst);
    if master >= 0 {
        crate::pty::copy_window_size(libc::STDIN_FILENO, master);
    }
}

/// Sends `signal` to the init of the container that forwarded signals go
/// to (SIGKILL to it ends the whole container). False when no container
/// runs in this process.
pub fn signal_container(signal: Signal) -> bool {
    let pid = FORWARD_PID.load(Ordering::SeqCst);
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
}

/// Sets (or clears) the terminal that SIGWINCH resizes.
pub fn set_pty_master(fd: Option<i32>) {
    PTY_MASTER.store(fd.unwrap_or(-1), Ordering::SeqCst);
}

/// The installed handlers; dropping it restores the previous ones.
pub struct SignalForwarding {
    previous: Vec<(Signal, SigAction)>,
}

impl SignalForwarding {
    /// Forwards signals to `init_pid` until dropped.
    pub fn install(init_pid: u32) -> Result<Self, RuntimeError> {
        let pid = i32::try_from(init_pid).map_err(|_| RuntimeError::HostSetup {
            op: "init pid out of range",
            source: std::io::Error::from_raw_os_error(libc::ERANGE),
        })?;
        FORWARD_PID.store(pid, Ordering::SeqCst);
        let mut installed = SignalForwarding {
            previous: Vec::new(),
        };
        let handlers = FORWARDED
            .iter()
            .map(|s| (*s, SigHandler::Handler(forward)))
            .chain([(Signal::SIGWINCH, SigHandler::Handler(resize))]);
        for (signal, handler) in handlers {
            let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
            // SAFETY: the handlers only load atomics and make
            // async-signal-safe syscalls (kill, ioctl).
            let previous =
                unsafe { sigaction(signal, &action) }.map_err(|e| RuntimeError::HostSetup {
                    op: "install signal handler",
                    source: e.into(),
                })?;
            installed.previous.push((signal, previous));
        }
        Ok(installed)
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        for (signal, previous) in self.previous.drain(..) {
            // SAFETY: puts back the handler that was installed before us.
            let _ = unsafe { sigaction(signal, &previous) };
        }
        FORWARD_PID.store(0, Ordering::SeqCst);
    }
}
