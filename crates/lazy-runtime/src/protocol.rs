//! The control socket between `run` (parent) and the container's init.
//!
//! The parent writes the spec as JSON and shuts its write side. The init (and,
//! when `execve` fails, the workload) answer with JSON lines; the terminal's
//! master fd travels with its line as `SCM_RIGHTS`. The init's end is
//! close-on-exec, so the socket reaches EOF when the init exits.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::spec::ExitStatus;

/// Why `execve` of the workload failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecFailure {
    /// No such file, or not on PATH (docker: 127).
    NotFound,
    /// Exists but cannot be executed (docker: 126).
    NotExecutable,
}

/// A message from the container to the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitMessage {
    /// A setup step failed; the container did not start.
    SetupFailed {
        /// What was being done.
        step: String,
        /// The error.
        message: String,
    },
    /// The workload could not be executed.
    ExecFailed {
        /// `args[0]`.
        command: String,
        /// Not found or not executable.
        failure: ExecFailure,
        /// The errno of the failure (ENOENT for a failed PATH lookup).
        errno: i32,
    },
    /// The terminal master fd is attached to this message.
    PtyMaster,
    /// The workload ended.
    Exited {
        /// How.
        status: ExitStatus,
    },
}

/// Sends one message, with `fd` attached if given.
pub fn send(socket: BorrowedFd<'_>, message: &InitMessage, fd: Option<RawFd>) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut sent = 0;
    while sent < line.len() {
        let iov = [IoSlice::new(&line[sent..])];
        let fds: Vec<RawFd> = fd.into_iter().filter(|_| sent == 0).collect();
        let cmsgs = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsgs };
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads messages until EOF, calling `on_message` for each with the fd
/// attached to it, if any.
pub fn receive_all(
    socket: BorrowedFd<'_>,
    mut on_message: impl FnMut(InitMessage, Option<OwnedFd>),
) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let received = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: SCM_RIGHTS just installed these fds in
                        // this process; nothing else owns them.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                msg.bytes
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if received == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buf[..received]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let message: InitMessage = serde_json::from_slice(&line).map_err(io::Error::other)?;
            let fd = match message {
                InitMessage::PtyMaster if !fds.is_empty() => Some(fds.remove(0)),
                _ => None,
            };
            on_message(message, fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

    use super::*;

    #[test]
    fn messages_and_fds_cross_the_socket() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        send(a.as_fd(), &InitMessage::PtyMaster, Some(file.as_raw_fd())).unwrap();
        let exited = InitMessage::Exited {
            status: ExitStatus::Signaled(9),
        };
        send(a.as_fd(), &exited, None).unwrap();
        drop(a);
        let mut got = Vec::new();
        receive_all(b.as_fd(), |m, fd| got.push((m, fd.is_some()))).unwrap();
        assert_eq!(got, [(InitMessage::PtyMaster, true), (exited, false)]);
    }
}
