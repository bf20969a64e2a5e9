//! Starting the process: exit codes, exec failures, env, cwd, user,
//! capabilities and no_new_privs.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{TestRootfs, run_captured, run_in_process};
use lazy_runtime::{ExitStatus, RuntimeError, User, resolve_user};

#[test]
fn privileged_exit_code_passes_through() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let spec = rootfs.spec("exit7", "echo out; echo err >&2; exit 7");
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 7, "{out:?}");
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(run_in_process(&spec).unwrap(), ExitStatus::Code(7));
    let spec = rootfs.spec("exit0", "true");
    assert_eq!(run_in_process(&spec).unwrap(), ExitStatus::Code(0));
}

#[test]
fn privileged_missing_command_is_127() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    for command in ["no-such-command", "/bin/no-such-file"] {
        let mut spec = rootfs.spec("missing", "");
        spec.args = vec![command.into()];
        match run_in_process(&spec) {
            Err(RuntimeError::CommandNotFound { command: c }) => assert_eq!(c, command),
            other => panic!("{command}: expected CommandNotFound, got {other:?}"),
        }
        let out = run_captured(&rootfs, &spec);
        assert_eq!(out.code, 127, "{out:?}");
        assert!(out.stderr.contains(command), "{out:?}");
    }
}

#[test]
fn privileged_non_executable_is_126() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let file = rootfs.path().join("data.txt");
    std::fs::write(&file, "#!/bin/sh\necho should not run\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut spec = rootfs.spec("noexec", "");
    spec.args = vec!["/data.txt".into()];
    match run_in_process(&spec) {
        Err(RuntimeError::NotExecutable { command, errno }) => {
            assert_eq!(command, "/data.txt");
            assert_eq!(errno, nix::errno::Errno::EACCES);
        }
        other => panic!("expected NotExecutable, got {other:?}"),
    }
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 126, "{out:?}");
    assert!(!out.stdout.contains("should not run"));
}

#[test]
fn privileged_env_cwd_and_path_lookup() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let mut spec = rootfs.spec(
        "env",
        "echo \"$GREETING|$PATH|$HOME|$HOSTNAME\"; pwd; ls -d /new/work/dir",
    );
    spec.env = vec!["GREETING=hello world".into(), "PATH=/usr/bin:/bin".into()];
    spec.cwd = "/new/work/dir".into();
    spec.hostname = "box".into();
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "hello world|/usr/bin:/bin|/root|box\n/new/work/dir\n/new/work/dir\n"
    );
    // The env is exactly what was asked for, plus docker's defaults.
    let mut spec = rootfs.spec("env-exact", "env | grep -v '^PWD=\\|^SHLVL=' | sort");
    spec.env = vec!["A=1".into()];
    spec.args = vec!["env".into()];
    let out = run_captured(&rootfs, &spec);
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort_unstable();
    let hostname = format!("HOSTNAME={}", &spec.id[..12]);
    let mut expected = vec![
        "A=1",
        "HOME=/root",
        &hostname,
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ];
    expected.sort_unstable();
    assert_eq!(lines, expected, "{out:?}");
}

#[test]
fn privileged_root_gets_docker_caps_and_no_new_privs() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "id -u; id -g; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status";
    let out = run_captured(&rootfs, &rootfs.spec("caps-root", script));
    assert_eq!(out.code, 0, "{out:?}");
    let mask = format!("{:016x}", lazy_runtime::docker_default_mask());
    assert_eq!(mask, "00000000a80425fb");
    let expected = format!(
        "0\n0\nCapInh:\t{zero}\nCapPrm:\t{mask}\nCapEff:\t{mask}\nCapBnd:\t{mask}\nCapAmb:\t{zero}\nNoNewPrivs:\t1\n",
        zero = "0000000000000000"
    );
    assert_eq!(out.stdout, expected);
}

#[test]
fn privileged_user_1000_has_its_ids_and_no_effective_caps() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "id -u; id -g; id -G; echo $HOME; grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs):' /proc/self/status; touch /etc/x 2>/dev/null || echo cannot-write-etc";
    let mut spec = rootfs.spec("user", script);
    spec.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![],
        home: None,
    };
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    let zero = "0000000000000000";
    assert_eq!(
        out.stdout,
        format!(
            "1000\n1000\n1000\n/\nCapPrm:\t{zero}\nCapEff:\t{zero}\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\ncannot-write-etc\n"
        )
    );

    // By name, with the supplementary group from /etc/group and the home.
    spec.user = resolve_user(rootfs.path(), "alice").unwrap();
    let out = run_captured(&rootfs, &spec);
    assert!(
        out.stdout.starts_with("1000\n1000\n1000 50\n/home/alice\n"),
        "{out:?}"
    );
}

#[test]
fn privileged_setup_failure_is_reported_as_125() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    // The working directory cannot be created: a file is in the way.
    let mut spec = rootfs.spec("setup-fails", "echo should not run");
    spec.cwd = "/bin/busybox/sub".into();
    match run_in_process(&spec) {
        Err(RuntimeError::ContainerSetup { step, .. }) => {
            assert!(step.contains("/bin/busybox/sub"), "{step}");
        }
        other => panic!("expected ContainerSetup, got {other:?}"),
    }
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("container setup failed"), "{out:?}");
}
