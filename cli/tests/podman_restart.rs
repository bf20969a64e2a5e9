//! A running Podman container reads on, without an error, while a
//! supervised lazyfsd is killed and started again: both mounts, the layers
//! and the additional layer store, are taken over. Real Podman, registry
//! and lazyfsd.

mod podman_node;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lazy_testkit::images::{BIG_FILE_LEN, noise};
use lazy_testkit::process::md5_hex;
use lazy_testkit::require_privileges;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use podman_node::{Node, OS_RELEASE, layer_digests, stat_within};
use sha2::Digest as _;

#[test]
fn privileged_a_podman_container_reads_on_while_supervised_lazyfsd_restarts() {
    require_privileges!();
    let node = Node::start_supervised();
    node.pull_ok(&node.lazy_image);
    let expected = md5_hex(&noise(BIG_FILE_LEN, 42));
    // Reads big.bin whole, O_DIRECT (no page cache), over and over.
    let control = node.work.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let volume = format!("{}:/control", control.display());
    let mut container = node
        .podman
        .command()
        .args(["run", "--rm", "-v", &volume, &node.lazy_image, "sh", "-c"])
        .arg("until [ -e /control/stop ]; do dd if=/data/big.bin iflag=direct bs=1M 2>/dev/null | md5sum; done")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sums = Arc::new(Mutex::new(Vec::<String>::new()));
    let collector = {
        let (stdout, sums) = (container.stdout.take().unwrap(), Arc::clone(&sums));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                sums.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let rounds_grow = |what: &str| {
        let start = sums.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while sums.lock().unwrap().len() < start + 2 {
            assert!(
                Instant::now() < deadline,
                "the container stalled {what}:\n{}",
                node.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    rounds_grow("before the restart");
    // A file of the layer store, open across the restart; only its head read.
    let digest = layer_digests(&node.lazy_image).remove(0);
    let layer_dir = node.image_dir(&node.lazy_image).join(&digest);
    let blob = std::fs::File::open(layer_dir.join("blob")).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&blob, &mut [0u8; 4096], 0).unwrap();

    let daemon = node.daemon.as_ref().unwrap();
    let first = daemon.worker_pid().expect("a supervised lazyfsd");
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    daemon.wait_for_new_worker(first);
    rounds_grow("after kill -9");

    // The layer store's mount was taken over too: the open blob reads on
    // (the rest of it is FUSE reads the new daemon answers), and the names
    // the kernel had looked up keep their meaning.
    let mut whole = Vec::new();
    std::io::Read::read_to_end(&mut &blob, &mut whole)
        .unwrap_or_else(|e| panic!("reading the open blob: {e}\n{}", node.daemon_log()));
    let sum = sha2::Sha256::digest(&whole);
    assert_eq!(format!("sha256:{sum:x}"), digest, "the blob's bytes");
    let info = std::fs::read_to_string(layer_dir.join("info")).unwrap();
    assert!(info.contains(&digest), "{info}");

    // The layer store is mounted again: a new container starts.
    let os_release = node.podman_ok(&["run", "--rm", &node.lazy_image, "cat", "/etc/os-release"]);
    assert_eq!(os_release, OS_RELEASE);

    std::fs::write(control.join("stop"), "").unwrap();
    let status = container.wait().unwrap();
    collector.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut container.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    let sums = sums.lock().unwrap();
    let wrong: Vec<_> = sums.iter().filter(|l| !l.starts_with(&expected)).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} rounds read wrong bytes: {wrong:?}",
        wrong.len(),
        sums.len()
    );
    drop(sums);
    drop(blob);

    // An upgrade to a config without the layer store: the supervisor lets
    // go of the old store mount, which then fails at once instead of hanging.
    let config = std::fs::read_to_string(&node.daemon_files.config).unwrap();
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("layer_store"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, config, "podman-setup wrote layer_store");
    std::fs::write(&node.daemon_files.config, without).unwrap();
    let before = daemon.worker_pid().unwrap();
    kill(Pid::from_raw(daemon.pid().unwrap() as i32), Signal::SIGHUP).unwrap();
    daemon.wait_for_new_worker(before);
    // A name the kernel has not cached, so the lookup reaches the mount.
    let uncached = node.image_dir("localhost:1/never:looked-up");
    let error = stat_within(uncached, Duration::from_secs(20));
    assert!(
        matches!(
            error,
            Some(std::io::ErrorKind::NotConnected | std::io::ErrorKind::ConnectionAborted)
        ),
        "{error:?}\n{}",
        daemon.log()
    );
    // No daemon knows that mount now: unmounting it is the operator's.
    nix::mount::umount2(&node.store, nix::mount::MntFlags::MNT_DETACH).unwrap();
}
