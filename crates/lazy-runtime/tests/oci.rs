//! The same container through the built-in runtime, runc and crun (Debian
//! packages `runc`, `crun`) gives the same output and exit code.

mod common;

use common::{RunningContainer, TestRootfs};
use lazy_runtime::{BindMount, NetworkMode, User};

/// What the container reports about itself; mount options and proc
/// details that legitimately differ between runtimes are left out.
const SELF_REPORT: &str = r#"
id -u; id -g; id -G; hostname; pwd; echo "$GREETING"
echo "etc-$(cat /etc/hostname)"; cat /etc/hosts /etc/resolv.conf
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status
# The built-in runtime has its init as PID 1, runc and crun exec the
# workload as PID 1: compare only that no host process is visible.
[ "$(ls /proc | grep -cE '^[0-9]+$')" -le 6 ] && echo own-pids-only
while read -r dev point type opts rest; do
  case ",$opts," in *,ro,*) mode=ro ;; *) mode=rw ;; esac
  # Masked files are binds of some /dev/null: runc's is ours (tmpfs, rw),
  # crun's the host's (devtmpfs, ro). Their content is checked below.
  [ -c "$point" ] && type=masked-file mode=-
  echo "mount $point $type $mode"
done < /proc/mounts | sort
ls /sys/class/net
cat /proc/keys /proc/timer_list | wc -c
cat /mnt/data/hello; touch /mnt/data/x 2>/dev/null || echo bind-ro
touch /rootfs-write 2>/dev/null || echo rootfs-ro
ulimit -n
exit 3
"#;

fn spec_for(rootfs: &TestRootfs, runtime: &str, user: User) -> lazy_runtime::ContainerSpec {
    let mut spec = rootfs.spec(&format!("oci-{runtime}-{}", user.uid), SELF_REPORT);
    spec.hostname = "same-everywhere".into();
    spec.env.push("GREETING=hi there".into());
    spec.cwd = "/work/dir".into();
    spec.user = user;
    spec.network = NetworkMode::None;
    spec.read_only_rootfs = true;
    spec.binds = vec![BindMount {
        source: rootfs.scratch().join("data"),
        destination: "/mnt/data".into(),
        read_only: true,
    }];
    spec.resources.pids_limit = Some(100);
    spec.resources.memory_bytes = Some(256 << 20);
    spec
}

fn compare_runtimes(user: User) {
    let rootfs = TestRootfs::new();
    std::fs::create_dir_all(rootfs.scratch().join("data")).unwrap();
    std::fs::write(rootfs.scratch().join("data/hello"), "hello from the host\n").unwrap();
    // The working directory must exist for runc and crun, which run with a
    // read-only rootfs here.
    std::fs::create_dir_all(rootfs.path().join("work/dir")).unwrap();
    let run = |runtime: &str| {
        let spec = spec_for(&rootfs, runtime, user.clone());
        let oci = (runtime != "builtin").then_some(runtime);
        RunningContainer::start_with(&rootfs, &spec, oci).wait()
    };
    let builtin = run("builtin");
    assert_eq!(builtin.code, 3, "{builtin:?}");
    assert!(
        builtin.stdout.contains("mount /proc proc rw"),
        "{builtin:?}"
    );
    assert!(
        builtin.stdout.contains("etc-same-everywhere\n")
            && builtin.stdout.contains("\tsame-everywhere\n")
            && builtin.stdout.contains("mount /etc/hosts "),
        "our /etc files are mounted: {builtin:?}"
    );
    for runtime in ["runc", "crun"] {
        let out = run(runtime);
        assert_eq!(out.code, builtin.code, "{runtime}: {out:?}");
        let diff: Vec<_> = diff_lines(&builtin.stdout, &out.stdout);
        assert!(
            diff.is_empty(),
            "{runtime} differs from the built-in runtime:\n{}\nstderr: {}",
            diff.join("\n"),
            out.stderr
        );
    }
}

/// Lines only in one of the outputs, marked `builtin:` or `other:`.
fn diff_lines(builtin: &str, other: &str) -> Vec<String> {
    let a: Vec<&str> = builtin.lines().collect();
    let b: Vec<&str> = other.lines().collect();
    let only_a = a
        .iter()
        .filter(|l| !b.contains(l))
        .map(|l| format!("builtin: {l}"));
    let only_b = b
        .iter()
        .filter(|l| !a.contains(l))
        .map(|l| format!("other:   {l}"));
    only_a.chain(only_b).collect()
}

fn require_runtimes() {
    for runtime in ["runc", "crun"] {
        let found = std::process::Command::new(runtime)
            .arg("--version")
            .output()
            .is_ok();
        assert!(
            found,
            "{runtime} is not installed: apt-get install runc crun"
        );
    }
}

#[test]
fn privileged_runc_and_crun_match_the_builtin_runtime_as_root() {
    lazy_testkit::require_privileges!();
    require_runtimes();
    compare_runtimes(User::root());
}

#[test]
fn privileged_runc_and_crun_match_the_builtin_runtime_as_user() {
    lazy_testkit::require_privileges!();
    require_runtimes();
    compare_runtimes(User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![50],
        home: None,
    });
}
