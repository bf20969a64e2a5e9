//! `lazy-runtime`: the built-in container runtime of `lazyrun`.
//!
//! [`run`] takes a prepared root filesystem directory and runs a process in
//! it the way `docker run` does: new PID, mount, UTS, IPC (and, with
//! [`NetworkMode::None`], network) namespaces; `pivot_root` into the rootfs
//! with a fresh `/proc`, a minimal `/dev`, a read-only `/sys` and docker's
//! masked and read-only paths; capabilities dropped to docker's default set;
//! `no_new_privs`; the requested user; cgroup limits (v2, or v1 where the
//! host keeps the controller there); with a state dir, its own
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`. The container's
//! init is PID 1 and reaps zombies; signals sent to the caller are
//! forwarded. [`write_oci_bundle`] and [`run_with_oci_runtime`] hand the
//! same container to runc or crun.
//!
//! The container's init is the caller's own binary, re-executed: call
//! [`init_main_if_requested`] first thing in `main`.
//!
//! This crate allows `unsafe`: forking, `pre_exec`, signal handlers and
//! terminal/interface ioctls have no safe wrappers. Each `unsafe` block is
//! minimal and says why it is sound.
#![allow(unsafe_code)]

mod caps;
pub mod cgroup;
pub mod containers;
mod devices;
mod error;
mod etc_files;
mod init;
mod launch;
mod mounts;
mod network;
mod oci;
pub mod overlay;
pub mod process;
mod protocol;
mod pty;
mod securejoin;
mod signals;
mod spec;
mod user;
mod workload;

pub use caps::{DOCKER_DEFAULT_CAPS, docker_default_mask};
pub use error::RuntimeError;
pub use init::INIT_MARKER;
pub use launch::run;
pub use mounts::{MASKED_PATHS, READONLY_PATHS};
pub use oci::{run_with_oci_runtime, write_oci_bundle};
pub use signals::signal_container;
pub use spec::{BindMount, ContainerSpec, DEFAULT_PATH, ExitStatus, NetworkMode, Resources, User};
pub use user::resolve_user;

/// If this process was started as a container init (`argv[1]` is
/// [`INIT_MARKER`]), runs the init and exits; otherwise returns at once.
///
/// Call it as the first line of `main` of every binary passed to [`run`] as
/// `init_exe`, before any thread, runtime or logger is started: the init
/// forks, and its stdout/stderr are the container's.
pub fn init_main_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(INIT_MARKER)) {
        return;
    }
    let fd = args
        .next()
        .and_then(|fd| fd.to_str().and_then(|fd| fd.parse::<i32>().ok()))
        .filter(|fd| *fd > 2);
    let code = match fd {
        Some(fd) => init::main(fd),
        None => {
            eprintln!(
                "{INIT_MARKER}: missing control socket fd (this mode is for lazy-runtime only)"
            );
            125
        }
    };
    std::process::exit(code)
}
