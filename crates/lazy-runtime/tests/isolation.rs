//! What the container can see: hostname, processes, mounts, /sys, /proc,
//! network.

mod common;

use common::{TestRootfs, run_captured};
use lazy_runtime::NetworkMode;

#[test]
fn privileged_hostname_is_the_containers() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let mut spec = rootfs.spec("hostname", "hostname");
    spec.hostname = "lazybox".into();
    let out = run_captured(&rootfs, &spec);
    assert_eq!((out.code, out.stdout.as_str()), (0, "lazybox\n"), "{out:?}");
    let host = nix::unistd::gethostname().unwrap();
    assert_ne!(
        host.to_str(),
        Some("lazybox"),
        "the host's hostname changed"
    );
}

#[test]
fn privileged_container_sees_only_its_own_processes() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    // sh is PID 2 (PID 1 is the init); ls and grep are its children.
    let script = "echo $$; ls /proc | grep -E '^[0-9]+$'";
    let out = run_captured(&rootfs, &rootfs.spec("pidns", script));
    assert_eq!(out.code, 0, "{out:?}");
    let pids: Vec<u32> = out.stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(pids[0], 2, "{out:?}");
    let listed = &pids[1..];
    assert!(listed.contains(&1) && listed.contains(&2), "{out:?}");
    assert!(
        listed.len() <= 4 && listed.iter().all(|p| *p <= 4),
        "host processes visible: {out:?}"
    );
}

#[test]
fn privileged_host_mounts_are_gone_and_proc_is_masked() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "cat /proc/mounts; echo ---; \
        cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l; \
        if echo 1 > /proc/sys/kernel/sysrq 2>/dev/null; then echo proc-sys-writable; else echo proc-sys-ro; fi; \
        if touch /sys/kernel/lazy 2>/dev/null; then echo sys-writable; else echo sys-ro; fi; \
        ls /dev | sort | tr '\\n' ' '";
    let out = run_captured(&rootfs, &rootfs.spec("mounts", script));
    assert_eq!(out.code, 0, "{out:?}");
    let (mounts, rest) = out.stdout.split_once("---\n").unwrap();
    let mount_points: Vec<&str> = mounts
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    let host_mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(host_mounts.contains(" /proc ") && mount_points.contains(&"/"));
    for point in &mount_points {
        assert!(
            !point.starts_with("/work") && !point.starts_with("/tmp"),
            "host mount {point} visible: {mounts}"
        );
    }
    let sys = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/sys"))
        .unwrap();
    assert!(sys.contains(" ro,"), "{sys}");
    let proc_sys = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/proc/sys"))
        .unwrap();
    assert!(proc_sys.contains(" ro,"), "{proc_sys}");
    assert_eq!(
        rest,
        "0\n0\n0\nproc-sys-ro\nsys-ro\ncore fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero "
    );
}

#[test]
fn privileged_network_none_has_only_loopback_up() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let mut spec = rootfs.spec(
        "net-none",
        "ls /sys/class/net; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo lo-up",
    );
    spec.network = NetworkMode::None;
    let out = run_captured(&rootfs, &spec);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "lo\nlo-up\n"),
        "{out:?}"
    );

    // With the host's network, the host's interfaces are there.
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    let mut spec = rootfs.spec("net-host", "ls /sys/class/net | wc -l");
    spec.network = NetworkMode::Host;
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.stdout.trim(), host_ifaces.to_string(), "{out:?}");
}
