//! The container's PID 1: reaping, signal forwarding, terminal.

mod common;

use std::time::Duration;

use common::{RunningContainer, TestRootfs, run_captured, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Counts zombies in the container's /proc.
const ZOMBIES: &str =
    "zombies() { cat /proc/[0-9]*/stat 2>/dev/null | grep -c '^[0-9]* ([^)]*) Z'; }";

#[test]
fn privileged_orphaned_zombies_are_reaped() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    // The subshell exits at once, so `sleep 1` is orphaned to PID 1; its
    // child `sleep 0.1` stays a zombie until `sleep 1` ends, and is then
    // orphaned to PID 1 as well. Only the init can reap them.
    let script = format!(
        "{ZOMBIES}
        (sh -c 'sleep 0.1 & exec sleep 1' &); wait
        i=0; until [ $(zombies) -ge 1 ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
        echo seen=$(zombies)
        i=0; until [ $(zombies) -eq 0 ] || [ $i -ge 60 ]; do sleep 0.05; i=$((i+1)); done
        echo left=$(zombies)"
    );
    let out = run_captured(&rootfs, &rootfs.spec("zombies", &script));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "seen=1\nleft=0\n");
}

#[test]
fn privileged_sigterm_is_forwarded_to_the_workload() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    // Default action: the workload dies of SIGTERM, docker reports 143.
    let spec = rootfs.spec("sigterm", "touch /ready; exec sleep 60");
    let container = RunningContainer::start(&rootfs, &spec);
    wait_until("container ready", Duration::from_secs(30), || {
        rootfs.path().join("ready").exists()
    });
    let runner = Pid::from_raw(i32::try_from(container.pid()).unwrap());
    kill(runner, Signal::SIGTERM).unwrap();
    let out = container.wait();
    assert_eq!(out.code, 143, "{out:?}");

    // A trap sees the signal and decides the exit code.
    std::fs::remove_file(rootfs.path().join("ready")).unwrap();
    let script = "trap 'echo got-term; exit 3' TERM; touch /ready; while :; do sleep 0.05; done";
    let spec = rootfs.spec("sigtrap", script);
    let container = RunningContainer::start(&rootfs, &spec);
    wait_until("container ready", Duration::from_secs(30), || {
        rootfs.path().join("ready").exists()
    });
    kill(
        Pid::from_raw(i32::try_from(container.pid()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let out = container.wait();
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (3, "got-term\n"),
        "{out:?}"
    );
}

#[test]
fn privileged_tty_gives_the_workload_a_terminal() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "tty; [ -t 0 ] && [ -t 1 ] && echo stdio-is-tty; echo $TERM; exit 5";
    let mut spec = rootfs.spec("tty", script);
    spec.tty = true;
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 5, "{out:?}");
    // The terminal turns \n into \r\n.
    assert_eq!(out.stdout, "/dev/pts/0\r\nstdio-is-tty\r\nxterm\r\n");

    spec.tty = false;
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.stdout, "not a tty\n\n", "{out:?}");
}
