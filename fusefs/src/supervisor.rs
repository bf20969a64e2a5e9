//! `lazyfsd --supervise`: a small parent that keeps the mounts alive while
//! daemons come and go. It starts lazyfsd, receives the `/dev/fuse`
//! descriptor of each of its mounts over a socket (SCM_RIGHTS) and holds
//! them: when the daemon dies (crash, `kill -9`), the kernel keeps the
//! connections and the requests in flight, and the supervisor starts the
//! daemon again with those descriptors, which takes the sessions over (see
//! `takeover`). SIGHUP replaces the daemon the same way, with the binary
//! now on disk (an upgrade). SIGTERM or SIGINT stop the daemon (it
//! unmounts) and then the supervisor.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::unistd::Pid;

use crate::takeover::{MountRole, Notice, SUPERVISOR_FD_ENV, recv_notice};

/// The mounts' descriptors the supervisor holds.
type Held = BTreeMap<MountRole, OwnedFd>;

/// A daemon that ran this long before dying is restarted at once.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The longest pause before restarting a daemon that keeps dying.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The signals the supervisor handles; its children get them unblocked.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(signal);
    }
    set
}

/// Unblocks what the supervisor blocked (a child inherits its mask).
pub fn unblock_inherited_signals() {
    let _ = handled().thread_unblock();
}

/// Runs lazyfsd (`args`, without `--supervise`) under supervision until
/// it stops normally or a stop signal arrives.
pub fn supervise(args: &[OsString]) -> anyhow::Result<()> {
    // Resolved once: after an upgrade the same path names the new binary.
    let exe = std::env::current_exe().context("finding the lazyfsd binary")?;
    let signals = handled();
    signals.thread_block().context("blocking signals")?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let mut held = Held::new();
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let mut child = spawn(&exe, args, &theirs, &held)?;
        tracing::info!(
            pid = child.id(),
            taking_over = held.len(),
            "lazyfsd started"
        );
        let outcome = watch(&mut child, &signal_fd, &ours, &mut held)?;
        match outcome {
            Outcome::Stopped => return Ok(()),
            Outcome::Replace => {
                failures = 0;
                continue;
            }
            Outcome::Died(status) => {
                tracing::warn!("lazyfsd died ({status}); restarting it");
                failures = match started.elapsed() > STABLE_AFTER {
                    true => 0,
                    false => failures + 1,
                };
                let pause = Duration::from_millis(250)
                    .saturating_mul(1 << failures.min(6))
                    .min(MAX_PAUSE);
                // A first death restarts at once; a daemon that keeps
                // dying waits longer each time.
                if failures > 1 {
                    std::thread::sleep(pause);
                }
            }
        }
    }
}

enum Outcome {
    /// The daemon stopped normally: the supervisor ends.
    Stopped,
    /// SIGHUP: start the daemon again at once.
    Replace,
    /// The daemon died: start it again.
    Died(std::process::ExitStatus),
}

/// Starts the daemon with the supervisor socket and the mounts'
/// descriptors held, all inherited under their numbers.
fn spawn(
    exe: &std::path::Path,
    args: &[OsString],
    socket: &OwnedFd,
    held: &Held,
) -> anyhow::Result<Child> {
    let mut command = Command::new(exe);
    command.args(args);
    inheritable(socket.as_fd(), true)?;
    command.env(SUPERVISOR_FD_ENV, socket.as_raw_fd().to_string());
    for role in MountRole::ALL {
        match held.get(&role) {
            Some(fd) => {
                inheritable(fd.as_fd(), true)?;
                command.env(role.env(), fd.as_raw_fd().to_string());
            }
            None => {
                command.env_remove(role.env());
            }
        }
    }
    let child = command.spawn().context("starting lazyfsd");
    inheritable(socket.as_fd(), false)?;
    for fd in held.values() {
        inheritable(fd.as_fd(), false)?;
    }
    child
}

fn inheritable(fd: BorrowedFd<'_>, yes: bool) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let flags = if yes {
        FdFlag::empty()
    } else {
        FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(drop)
}

/// Waits for the daemon to end, keeping the descriptors it sends and
/// passing signals on.
fn watch(
    child: &mut Child,
    signal_fd: &SignalFd,
    socket: &OwnedFd,
    held: &mut Held,
) -> anyhow::Result<Outcome> {
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid")?);
    let mut stopping = false;
    let mut replacing = false;
    loop {
        let mut fds = [
            PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(socket.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other.context("waiting for lazyfsd")?,
        };
        let signal_ready = fds[0].any().unwrap_or(false);
        let socket_ready = fds[1].any().unwrap_or(false);
        if socket_ready {
            match recv_notice(socket.as_fd())? {
                Some(Notice::Hold(role, fd)) => {
                    tracing::info!("holding the FUSE descriptor of the {role:?} mount");
                    held.insert(role, fd);
                }
                Some(Notice::Release(role)) => {
                    tracing::info!("releasing the FUSE descriptor of the {role:?} mount");
                    held.remove(&role);
                }
                None => {}
            }
        }
        if !signal_ready {
            continue;
        }
        let Some(info) = signal_fd.read_signal()? else {
            continue;
        };
        match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                stopping = true;
                let _ = kill(pid, Signal::SIGTERM);
            }
            Ok(Signal::SIGHUP) => {
                tracing::info!("replacing lazyfsd (SIGHUP)");
                replacing = true;
                let _ = kill(pid, Signal::SIGKILL);
            }
            _ => {}
        }
        // SIGCHLD, or any signal: is the daemon gone?
        if let Some(status) = child.try_wait()? {
            if stopping || (status.success() && !replacing) {
                // A normal stop unmounted: the descriptors are dead.
                held.clear();
                return Ok(Outcome::Stopped);
            }
            if !held.contains_key(&MountRole::Main) {
                tracing::warn!("lazyfsd ended before handing over its mount; it will mount again");
            }
            return Ok(match replacing {
                true => Outcome::Replace,
                false => Outcome::Died(status),
            });
        }
    }
}
