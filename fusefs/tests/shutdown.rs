//! Stopping is bounded: SIGTERM ends lazyfsd within seconds even while a
//! reader waits on a fetch from a registry that accepts connections and
//! never answers; the reader gets an error, not a hang, and no mount is left.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{Lazyfsd, setup};
use lazy_testkit::require_privileges;

/// Accepts connections on `listener` and holds them open, silent.
fn black_hole(listener: TcpListener) -> Arc<AtomicUsize> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    accepted
}

fn mounted(path: &Path) -> bool {
    let target = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

#[test]
fn privileged_sigterm_stops_lazyfsd_while_a_reader_waits_on_a_silent_registry() {
    require_privileges!();
    let mut s = setup();
    let dir = s.work.path().join("d");
    let mut daemon = Lazyfsd::start(&dir, &s.registry.host(), "fetch_timeout_secs = 600");
    // Registry requests may take ten minutes too: only the stop can end the wait.
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        config.replace("timeout_secs = 5", "timeout_secs = 600"),
    )
    .unwrap();
    daemon.kill9();
    daemon.spawn();
    let layers = daemon.attach(&s.image);
    let big = Path::new(&layers[0].path).join("data/big.bin");

    let host = s.registry.host();
    s.registry.stop();
    let accepted = black_hole(TcpListener::bind(&host).unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&big));
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the read never reached the registry"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the reader waits on the silent registry"
    );

    let (status, took) = daemon
        .process
        .terminate_within(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("lazyfsd ignored SIGTERM for 15 s:\n{}", daemon.log()));
    assert!(
        took < Duration::from_secs(5),
        "stopped in {took:?} ({status}):\n{}",
        daemon.log()
    );
    let read = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the reader is released");
    assert!(read.is_err(), "the reader gets an error, not data");
    assert!(!mounted(&daemon.mountpoint), "no mount is left behind");
}
