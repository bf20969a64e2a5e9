//! The container's own /etc/hostname, /etc/hosts and /etc/resolv.conf:
//! generated in its state dir, bind-mounted over the image's files.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::{TestRootfs, run_captured};
use lazy_runtime::{BindMount, NetworkMode};

const SHOW_ETC: &str =
    "cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf";

/// The host's file, or empty where the host has none (as the runtime).
fn host_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The three files as the container printed them with [`SHOW_ETC`].
fn split_etc(stdout: &str) -> [String; 3] {
    let parts: Vec<&str> = stdout.splitn(3, "---\n").collect();
    assert_eq!(parts.len(), 3, "{stdout}");
    [0, 1, 2].map(|i| parts[i].to_string())
}

#[test]
fn privileged_own_network_gets_its_hostname_and_localhost() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    std::fs::write(rootfs.path().join("etc/hosts"), "10.1.1.1 from-image\n").unwrap();
    let mut spec = rootfs.spec("etc-none", SHOW_ETC);
    spec.hostname = "lazybox".into();
    spec.network = NetworkMode::None;
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    let [hostname, hosts, resolv] = split_etc(&out.stdout);
    assert_eq!(hostname, "lazybox\n");
    assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains("\tlazybox\n"), "{hosts}");
    assert!(!hosts.contains("from-image"), "{hosts}");
    // docker copies the host's resolv.conf even without a network.
    assert_eq!(resolv, host_file("/etc/resolv.conf"));
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("etc/hosts")).unwrap(),
        "10.1.1.1 from-image\n",
        "the image's file is untouched"
    );
}

#[test]
fn privileged_host_network_sees_the_hosts_files() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let mut spec = rootfs.spec("etc-host", SHOW_ETC);
    spec.network = NetworkMode::Host;
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    let [hostname, hosts, resolv] = split_etc(&out.stdout);
    assert_eq!(hostname, format!("{}\n", spec.effective_hostname()));
    assert_eq!(hosts, host_file("/etc/hosts"));
    assert_eq!(resolv, host_file("/etc/resolv.conf"));
}

#[test]
fn privileged_etc_files_are_writable_unless_the_rootfs_is_read_only() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "echo 10.9.9.9 added >> /etc/hosts && echo written || echo refused";
    let mut spec = rootfs.spec("etc-rw", script);
    let out = run_captured(&rootfs, &spec);
    assert_eq!((out.code, out.stdout.as_str()), (0, "written\n"), "{out:?}");
    let state = spec.state_dir.clone().unwrap();
    let hosts = std::fs::read_to_string(state.join("hosts")).unwrap();
    assert!(
        hosts.ends_with("10.9.9.9 added\n"),
        "the write went to {hosts}"
    );
    assert_eq!(
        std::fs::metadata(rootfs.path().join("etc/hosts"))
            .unwrap()
            .len(),
        0,
        "not to the rootfs"
    );

    spec.read_only_rootfs = true;
    let out = run_captured(&rootfs, &spec);
    assert_eq!((out.code, out.stdout.as_str()), (0, "refused\n"), "{out:?}");
}

#[test]
fn privileged_a_user_bind_wins_over_ours() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let mine = rootfs.scratch().join("my-resolv.conf");
    std::fs::write(&mine, "nameserver 192.0.2.1\n").unwrap();
    let mut spec = rootfs.spec("etc-user-bind", "cat /etc/resolv.conf /etc/hostname");
    spec.hostname = "mine".into();
    spec.binds = vec![BindMount {
        source: mine,
        destination: "/etc/resolv.conf".into(),
        read_only: true,
    }];
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "nameserver 192.0.2.1\nmine\n");
}

#[test]
fn privileged_symlinked_etc_files_are_replaced_inside_the_rootfs() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let victim = rootfs.scratch().join("victim");
    std::fs::write(&victim, "host data\n").unwrap();
    let etc = rootfs.path().join("etc");
    // To a host path (absolute, and climbing out with ..), and inside the
    // rootfs to a systemd-resolved stub.
    symlink(&victim, etc.join("hostname")).unwrap();
    let up = Path::new("../../..").join(victim.strip_prefix("/").unwrap());
    symlink(&up, etc.join("hosts")).unwrap();
    symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        etc.join("resolv.conf"),
    )
    .unwrap();
    let mut spec = rootfs.spec("etc-symlinks", SHOW_ETC);
    spec.hostname = "linked".into();
    spec.network = NetworkMode::None;
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    let [hostname, hosts, resolv] = split_etc(&out.stdout);
    assert_eq!(hostname, "linked\n");
    assert!(hosts.contains("\tlinked\n"), "{hosts}");
    assert_eq!(resolv, host_file("/etc/resolv.conf"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host data\n");
    assert!(
        !rootfs.path().join("run").exists(),
        "the stub link's target was not created"
    );
    for name in ["hostname", "hosts", "resolv.conf"] {
        let meta = std::fs::symlink_metadata(etc.join(name)).unwrap();
        assert!(meta.is_file(), "{name}: the link was replaced by a file");
    }
}
