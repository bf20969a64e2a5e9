//! Resource limits through real cgroups (v2 where the host offers the
//! controller, v1 otherwise).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{RunningContainer, TestRootfs, run_captured, wait_until};
use lazy_runtime::cgroup::{CgroupMounts, Controller, PARENT};

/// Where the container `id` has its `controller` cgroup, and whether it is v2.
fn cgroup_dir(controller: Controller, id: &str) -> (PathBuf, bool) {
    let mounts = CgroupMounts::from_host().unwrap();
    match mounts.v2_root_with(controller) {
        Some(root) => (root.join(PARENT).join(id), true),
        None => (
            mounts
                .v1_root_of(controller)
                .expect("controller unavailable")
                .join(PARENT)
                .join(id),
            false,
        ),
    }
}

#[test]
fn privileged_memory_hog_is_oom_killed() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    // tail keeps the last 10 lines: /dev/zero has none, so it keeps all.
    let script =
        "head -c 8000000 /dev/zero | tail > /dev/null && echo small-fits; exec tail /dev/zero";
    let mut spec = rootfs.spec("oom", script);
    spec.resources.memory_bytes = Some(32 << 20);
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 137, "{out:?}");
    assert_eq!(out.stdout, "small-fits\n");
    assert!(
        !cgroup_dir(Controller::Memory, &spec.id).0.exists(),
        "cgroup left behind"
    );
}

#[test]
fn privileged_pids_limit_stops_a_fork_bomb() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); echo $i > /started; done; echo all-started";
    let mut spec = rootfs.spec("pids", script);
    spec.resources.pids_limit = Some(20);
    let out = run_captured(&rootfs, &spec);
    let started: u32 = std::fs::read_to_string(rootfs.path().join("started"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!out.stdout.contains("all-started"), "{out:?}");
    assert_ne!(out.code, 0, "{out:?}");
    // 20 tasks: the init, sh and at most 18 sleeps.
    assert!(
        (10..=18).contains(&started),
        "started {started} sleeps: {out:?}"
    );
    assert!(out.stderr.contains("fork"), "{out:?}");
    assert!(
        !cgroup_dir(Controller::Pids, &spec.id).0.exists(),
        "cgroup left behind"
    );
}

#[test]
fn privileged_cpu_quota_is_written_and_cgroup_removed() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "touch /ready; while [ ! -e /done ]; do sleep 0.05; done";
    let mut spec = rootfs.spec("cpu", script);
    spec.resources.cpus = Some(0.5);
    let (dir, v2) = cgroup_dir(Controller::Cpu, &spec.id);
    let container = RunningContainer::start(&rootfs, &spec);
    wait_until("container ready", Duration::from_secs(30), || {
        rootfs.path().join("ready").exists()
    });
    if v2 {
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000\n"
        );
    } else {
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).unwrap(),
            "50000\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.cfs_period_us")).unwrap(),
            "100000\n"
        );
    }
    // The init and the shell (and maybe a sleep) are in it.
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().count() >= 2, "{procs:?}");
    std::fs::write(rootfs.path().join("done"), "").unwrap();
    let out = container.wait();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!dir.exists(), "cgroup left behind");
}
