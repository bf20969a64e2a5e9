//! The workload: the forked child of the init that becomes the container's
//! process. It takes its terminal, drops privileges and executes the command.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{AccessFlags, Gid, Uid, access};

use crate::init::{SetupError, Step};
use crate::protocol::{self, ExecFailure, InitMessage};
use crate::spec::{ContainerSpec, DEFAULT_PATH};

/// Prepares and executes the workload; on failure reports to the parent and
/// exits (127 not found, 126 not executable, 125 setup).
pub fn exec(spec: &ContainerSpec, socket: &OwnedFd, tty: Option<OwnedFd>, mask: &SigSet) -> ! {
    let (message, code) = match prepare(spec, tty, mask) {
        Err(e) => (
            InitMessage::SetupFailed {
                step: e.step,
                message: e.source.to_string(),
            },
            125,
        ),
        Ok(()) => {
            let (failure, errno) = exec_command(spec);
            let code = match failure {
                ExecFailure::NotFound => 127,
                ExecFailure::NotExecutable => 126,
            };
            let command = spec.args[0].clone();
            (
                InitMessage::ExecFailed {
                    command,
                    failure,
                    errno: errno as i32,
                },
                code,
            )
        }
    };
    let _ = protocol::send(socket.as_fd(), &message, None);
    std::process::exit(code)
}

/// Everything between fork and exec, in runc's order.
fn prepare(spec: &ContainerSpec, tty: Option<OwnedFd>, mask: &SigSet) -> Result<(), SetupError> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None).step("restore signal mask")?;
    // Rust ignores SIGPIPE in its binaries and ignored signals survive exec.
    // SAFETY: setting a signal to its default action installs no handler.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .step("reset SIGPIPE")?;
    nix::unistd::setsid().step("setsid")?;
    if let Some(tty) = tty {
        // SAFETY: TIOCSCTTY takes an int argument and touches no memory.
        let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) };
        Errno::result(rc).step("make the terminal controlling")?;
        for target in 0..=2 {
            // SAFETY: dup2 onto the standard fds, which we mean to replace.
            let rc = unsafe { libc::dup2(tty.as_raw_fd(), target) };
            Errno::result(rc).step("attach the terminal to stdio")?;
        }
    }
    nix::unistd::chdir(&spec.cwd).step_path("chdir", &spec.cwd)?;
    nix::sys::prctl::set_no_new_privs().step("prctl(PR_SET_NO_NEW_PRIVS)")?;
    crate::caps::restrict_to_docker_defaults()
        .map_err(io_other)
        .step("drop capabilities")?;
    let user = &spec.user;
    let groups: Vec<Gid> = user
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).step("setgroups")?;
    let gid = Gid::from_raw(user.gid);
    nix::unistd::setresgid(gid, gid, gid).step("setgid")?;
    let uid = Uid::from_raw(user.uid);
    nix::unistd::setresuid(uid, uid, uid).step("setuid")?;
    // SAFETY: marks every fd from 3 up close-on-exec; touches no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).step("close_range")?;
    Ok(())
}

/// Looks up and executes `args[0]`; returns only on failure.
fn exec_command(spec: &ContainerSpec) -> (ExecFailure, Errno) {
    let command = &spec.args[0];
    let path_var = spec
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let program = if command.contains('/') {
        PathBuf::from(command)
    } else {
        match look_path(command, path_var) {
            Some(program) => program,
            None => return (ExecFailure::NotFound, Errno::ENOENT),
        }
    };
    let to_c = |s: &str| CString::new(s).map_err(|_| Errno::EINVAL);
    let prepared = (|| {
        let program =
            CString::new(program.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
        let args = spec
            .args
            .iter()
            .map(|a| to_c(a))
            .collect::<Result<Vec<_>, _>>()?;
        let env = spec
            .env
            .iter()
            .map(|e| to_c(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, Errno>((program, args, env))
    })();
    let errno = match prepared {
        Ok((program, args, env)) => match nix::unistd::execve(&program, &args, &env) {
            Err(errno) => errno,
            Ok(never) => match never {},
        },
        Err(errno) => errno,
    };
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => (ExecFailure::NotFound, errno),
        _ => (ExecFailure::NotExecutable, errno),
    }
}

/// The first executable `dir/command` for `dir` in `path_var` (an empty
/// entry means the working directory), as Go's `exec.LookPath` that docker
/// uses: non-executable matches are skipped.
pub fn look_path(command: &str, path_var: &str) -> Option<PathBuf> {
    path_var
        .split(':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".")
            } else {
                Path::new(dir)
            }
        })
        .map(|dir| dir.join(command))
        .find(|candidate| {
            candidate.metadata().is_ok_and(|m| m.is_file())
                && access(candidate.as_path(), AccessFlags::X_OK).is_ok()
        })
}

fn io_other(e: caps::errors::CapsError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn path_lookup_skips_missing_and_non_executable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool"), "").unwrap();
        std::fs::set_permissions(a.join("tool"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = format!("/nonexistent:{}:{}", a.display(), b.display());
        assert_eq!(look_path("tool", &path_var), Some(b.join("tool")));
        assert_eq!(look_path("missing", &path_var), None);
    }
}
