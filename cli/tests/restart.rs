//! Restarts that keep mounts alive: under `lazyfsd --supervise`, readers
//! of a lazy layer — a process on the host and a container — keep reading
//! correct bytes, without one error, while lazyfsd is killed with SIGKILL
//! and started again, and while it is replaced (SIGHUP to the supervisor,
//! the upgrade path). Reads use O_DIRECT and passthrough is off, so every
//! read is a FUSE request that a dying daemon can leave unanswered. Real
//! registry, real lazyfsd, real containers.

mod lazyrun_host;

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::{BIG_FILE_LEN, noise};
use lazy_testkit::process::md5_hex;
use lazy_testkit::require_privileges;
use lazyrun_host::{Host, sibling, stderr, stdout};

const BLOCK: usize = 1 << 20;

/// Reads `path` whole with O_DIRECT into an aligned buffer.
fn read_direct(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::options()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path)?;
    let mut raw = vec![0u8; BLOCK + 4096];
    let skip = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[skip..skip + BLOCK];
    let mut out = Vec::new();
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Reads `path` over and over until `stop`; counts rounds, and fails on
/// the first error or wrong byte.
fn reader(
    path: PathBuf,
    expected: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let data = read_direct(&path).map_err(|e| format!("read error: {e}"))?;
            if data != *expected {
                return Err(format!("wrong bytes ({} read)", data.len()));
            }
            rounds.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// Lets the readers make progress: waits until `rounds` grows by 2.
fn progress(rounds: &AtomicU64, what: &str) {
    let start = rounds.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rounds.load(Ordering::Relaxed) < start + 2 {
        assert!(Instant::now() < deadline, "readers stalled {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn privileged_readers_see_no_error_while_lazyfsd_is_killed_and_replaced() {
    require_privileges!();
    let mut host = Host::with_sample();
    host.daemon = None;
    let files = DaemonFiles::write(
        &host.work.path().join("d"),
        &host.registry.host(),
        "passthrough = false\nprefetch = \"none\"",
    );
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&files.config)
        .unwrap();
    std::io::Write::write_all(
        &mut config,
        format!("default_registry = {:?}\n", host.registry.host()).as_bytes(),
    )
    .unwrap();
    // The binary is a copy, so that an upgrade can replace it.
    let bin = host.work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let installed = bin.join("lazyfsd");
    std::fs::copy(sibling("lazyfsd"), &installed).unwrap();
    let daemon = DaemonProcess::start_supervised(&installed, files);
    let image = format!("{}/sample:lazy", host.registry.host());
    let out = host.lazyctl(&["attach", &image]);
    assert!(out.status.success(), "{}", stderr(&out));
    let layer = PathBuf::from(stdout(&out).lines().next().unwrap());
    let expected = Arc::new(noise(BIG_FILE_LEN, 42));

    // A container reading the same file in a loop, O_DIRECT, all the while.
    let md5 = md5_hex(&expected);
    let control = host.work.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let volume = format!("{}:/control", control.display());
    let container = host
        .command(&[
            "--rm",
            "-v",
            &volume,
            "sample:lazy",
            "sh",
            "-c",
            "until [ -e /control/stop ]; do dd if=/data/big.bin iflag=direct bs=1M 2>/dev/null | md5sum; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            reader(
                layer.join("data/big.bin"),
                Arc::clone(&expected),
                Arc::clone(&stop),
                Arc::clone(&rounds),
            )
        })
        .collect();
    progress(&rounds, "before any restart");

    let first = daemon.worker_pid().expect("a supervised lazyfsd");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = daemon.wait_for_new_worker(first);
    progress(&rounds, "after kill -9");

    // An upgrade: a new binary is installed (a new file, renamed over the
    // old one, as package managers do), then the supervisor gets SIGHUP.
    let staged = bin.join("lazyfsd.new");
    std::fs::copy(sibling("lazyfsd"), &staged).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid().unwrap() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let third = daemon.wait_for_new_worker(second);
    let running = std::fs::metadata(format!("/proc/{third}/exe")).unwrap();
    let new = std::fs::metadata(&installed).unwrap();
    assert_eq!(
        (running.dev(), running.ino()),
        (new.dev(), new.ino()),
        "the replacement runs the new binary"
    );
    progress(&rounds, "after the replacement");

    stop.store(true, Ordering::Relaxed);
    std::fs::write(control.join("stop"), "").unwrap();
    for r in readers {
        r.join()
            .unwrap()
            .unwrap_or_else(|e| panic!("a host reader failed: {e}\n{}", daemon.log()));
    }
    let out = container.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "container: {}\n{lines}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.lines().count() >= 2, "the container read: {lines}");
    assert!(lines.lines().all(|l| l.starts_with(&md5)), "{lines}");
    assert!(
        daemon.log().contains("took over the FUSE session"),
        "{}",
        daemon.log()
    );
}
