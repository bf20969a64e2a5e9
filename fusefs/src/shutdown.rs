//! Stopping lazyfsd in bounded time, whatever its readers are waiting for.
//!
//! A reader blocked on a fetch from a registry that does not answer keeps
//! a FUSE request pending, and the mount busy: a plain unmount fails, and
//! joining the session threads would wait for the fetch. So: the kernel
//! connection is aborted first (pending requests fail with ENOTCONN, the
//! session threads see ENODEV and end), then the mount is unmounted, or
//! detached lazily when files are still open on it, and every step has a
//! deadline. A watchdog ends the process if the whole stop overruns;
//! exiting closes `/dev/fuse`, which aborts the connection too.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use fuser::BackgroundSession;
use lazy_cache::ChunkCache;

/// The whole stop, before the watchdog ends the process.
const STOP_DEADLINE: Duration = Duration::from_secs(8);
/// Waiting for the FUSE session threads to end.
const JOIN_DEADLINE: Duration = Duration::from_secs(3);
/// Waiting for the async runtime's tasks.
const RUNTIME_DEADLINE: Duration = Duration::from_secs(2);

/// A FUSE session and where it is mounted.
pub(crate) type Mounted = (BackgroundSession, std::path::PathBuf);

/// Stops serving: persists what must survive, unmounts the layer store (if
/// any) and the main mount, ends the runtime.
pub(crate) fn stop(
    main: Mounted,
    store: Option<Mounted>,
    cache: &ChunkCache,
    runtime: tokio::runtime::Runtime,
) {
    start_watchdog();
    if let Err(e) = cache.persist_use_times() {
        tracing::warn!("saving chunk use times: {e}");
    }
    if let Some((session, path)) = store {
        unmount(session, &path);
        // An empty store would make Podman download lazy layers as plain
        // ones and fail on them obscurely; without the directory it stops
        // at once, naming the store (as with a killed lazyfsd's dead mount).
        if let Err(e) = std::fs::remove_dir(&path) {
            tracing::warn!("removing the layer store directory {}: {e}", path.display());
        }
    }
    unmount(main.0, &main.1);
    runtime.shutdown_timeout(RUNTIME_DEADLINE);
}

/// Aborts the connection of the session mounted at `mountpoint`, unmounts
/// it (or detaches it when busy) and ends the session, within deadlines.
fn unmount(session: BackgroundSession, mountpoint: &Path) {
    // Pending requests fail now (their readers get ENOTCONN), so nothing
    // the session threads wait on outlives the stop.
    if let Some(connection) = connection_of(mountpoint) {
        abort(connection);
    }
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(session.umount_and_join());
    });
    let detach = |why: &dyn std::fmt::Display| {
        tracing::warn!("unmounting {}: {why}; detaching it", mountpoint.display());
        if let Err(e) = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("detaching {}: {e}", mountpoint.display());
        }
    };
    match done_rx.recv_timeout(JOIN_DEADLINE) {
        // A session taken over from another daemon holds no mount of its
        // own to unmount: detach what is left.
        Ok(Ok(())) if crate::daemon::is_mounted(mountpoint) => detach(&"still mounted"),
        Ok(Ok(())) => {}
        // Busy: files are still open on it (a container runs).
        Ok(Err(e)) => detach(&e),
        Err(_) => detach(&"the FUSE session did not end"),
    }
}

/// Ends the process if the stop takes longer than [`STOP_DEADLINE`].
fn start_watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(STOP_DEADLINE);
        tracing::error!(
            "stopping took longer than {} s; exiting now",
            STOP_DEADLINE.as_secs()
        );
        std::process::exit(1);
    });
}

/// The FUSE connection number of the mount at `mountpoint` (its device's
/// minor number).
fn connection_of(mountpoint: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint).ok()?.dev();
    Some(nix::sys::stat::minor(dev))
}

/// Aborts FUSE connection `connection` through fusectl, mounting fusectl
/// first where the system has not (best effort: the watchdog is the bound).
fn abort(connection: u64) {
    let connections = Path::new("/sys/fs/fuse/connections");
    let control = connections.join(connection.to_string()).join("abort");
    if !control.exists() {
        let mounted = nix::mount::mount(
            Some("fusectl"),
            connections,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
        if let Err(e) = mounted {
            tracing::debug!("mounting fusectl: {e}");
        }
    }
    match std::fs::write(&control, "1") {
        Ok(()) => tracing::debug!("aborted FUSE connection {connection}"),
        Err(e) => tracing::debug!("aborting FUSE connection {connection}: {e}"),
    }
}
