//! `-t`: a pseudo-terminal from the container's own devpts, whose master is
//! relayed to the caller's stdin and stdout.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::unistd::Uid;

use crate::error::RuntimeError;
use crate::init::{SetupError, Step};

nix::ioctl_read_bad!(get_window_size, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, libc::winsize);

/// Opens a terminal in the container's devpts (after pivot_root); the slave
/// belongs to `uid`. Returns (master, slave), both close-on-exec.
pub fn open_in_container(uid: u32) -> Result<(OwnedFd, OwnedFd), SetupError> {
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).step("open /dev/ptmx")?;
    nix::pty::grantpt(&master).step("grantpt")?;
    nix::pty::unlockpt(&master).step("unlockpt")?;
    let name = nix::pty::ptsname_r(&master).step("ptsname")?;
    let slave = nix::fcntl::open(name.as_str(), flags, nix::sys::stat::Mode::empty())
        .step("open terminal slave")?;
    nix::unistd::fchown(&slave, Some(Uid::from_raw(uid)), None).step("chown terminal")?;
    // SAFETY: into_raw_fd hands over sole ownership of the master fd.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    Ok((master, slave))
}

/// Copies the window size of `from` (a terminal) to `to` (the master).
/// Async-signal-safe: used from the SIGWINCH handler.
pub fn copy_window_size(from: RawFd, to: RawFd) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: both ioctls use `size`, a valid winsize on our stack; failure
    // (no terminal) leaves the master's size alone.
    unsafe {
        if get_window_size(from, &mut size).is_ok() {
            let _ = set_window_size(to, &size);
        }
    }
}

/// Relays the caller's stdin to the master and the master to the caller's
/// stdout, with the caller's terminal (if stdin is one) in raw mode.
pub struct TtyRelay {
    output: JoinHandle<()>,
    input: JoinHandle<()>,
    stop_input: OwnedFd,
    saved_termios: Option<Termios>,
}

impl TtyRelay {
    /// Starts relaying through `master`.
    pub fn start(master: OwnedFd) -> Result<Self, RuntimeError> {
        let term_err = |op| move |source| RuntimeError::Terminal { op, source };
        let stdin = io::stdin();
        let saved_termios = match tcgetattr(stdin.as_fd()) {
            Ok(saved) => {
                let mut raw = saved.clone();
                cfmakeraw(&mut raw);
                tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                    .map_err(|e| term_err("raw mode")(e.into()))?;
                Some(saved)
            }
            Err(_) => None,
        };
        copy_window_size(libc::STDIN_FILENO, master.as_raw_fd());
        crate::signals::set_pty_master(Some(master.as_raw_fd()));

        let (stop_read, stop_input) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| term_err("pipe")(e.into()))?;
        let input_master = File::from(master.try_clone().map_err(term_err("dup master"))?);
        let mut output_master = File::from(master);
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdout = io::stdout();
            loop {
                match output_master.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if stdout
                            .write_all(&buf[..n])
                            .and_then(|()| stdout.flush())
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // EIO: every slave fd is closed, the container is gone.
                    Err(_) => break,
                }
            }
        });
        let input = std::thread::spawn(move || relay_input(input_master, stop_read));
        Ok(TtyRelay {
            output,
            input,
            stop_input,
            saved_termios,
        })
    }

    /// Waits for the container's output to drain (call after the container
    /// ended), stops reading stdin and restores the terminal.
    pub fn finish(self) {
        let _ = self.output.join();
        let _ = nix::unistd::write(&self.stop_input, b"x");
        let _ = self.input.join();
        crate::signals::set_pty_master(None);
        if let Some(saved) = &self.saved_termios {
            let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Copies stdin to the master until stdin ends or `stop` becomes readable.
fn relay_input(mut master: File, stop: OwnedFd) {
    // SAFETY: fd 0 stays open for the life of the process.
    let stdin = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [
            PollFd::new(stdin, PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        match nix::unistd::read(stdin, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if master.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
