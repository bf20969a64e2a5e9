//! `lazyrun` end to end: container semantics. A real registry, a real
//! lazyfsd, real overlay mounts and namespaces; the sample image
//! (busybox-static and test files).

mod lazyrun_host;

use std::process::Stdio;
use std::time::Duration;

use lazy_testkit::images::base_layer;
use lazy_testkit::layout::{TestCompression, write_oci_image, write_oci_image_with_config};
use lazy_testkit::require_privileges;
use lazyrun_host::{Host, code, stderr, stdout};
use serde_json::json;

#[test]
fn privileged_exit_codes_env_workdir_user_stdin_and_rm() {
    require_privileges!();
    let host = Host::with_sample();
    let out = host.lazyrun(&["--rm", "sample:lazy", "sh", "-c", "cat /etc/motd; exit 7"]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_eq!(stdout(&out), "welcome to the lazy test image\n");

    let out = host.lazyrun(&[
        "--rm",
        "-e",
        "GREETING=hi there",
        "-w",
        "/data",
        "-u",
        "1000:1000",
        "sample:lazy",
        "sh",
        "-c",
        "echo \"$GREETING\"; busybox pwd; busybox id -u; busybox id -g; echo $PATH",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "hi there\n/data\n1000\n1000\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );

    let out = host.lazyrun_with_stdin(&["--rm", "-i", "sample:lazy", "cat"], b"piped in\n");
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "piped in\n"));
    // Without -i the container's stdin is empty, as with docker.
    let out = host.lazyrun_with_stdin(&["--rm", "sample:lazy", "cat"], b"not read\n");
    assert_eq!((code(&out), stdout(&out).as_str()), (0, ""));

    let out = host.lazyrun(&["--rm", "sample:lazy", "no-such-command"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    let out = host.lazyrun(&["--rm", "sample:lazy", "/etc/motd"]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    host.assert_no_container_left();
}

#[test]
fn privileged_entrypoint_and_cmd_follow_docker() {
    require_privileges!();
    let mut host = Host::new();
    let src = host.work.path().join("src");
    let config = json!({
        "Entrypoint": ["/bin/echo", "ep"],
        "Cmd": ["default"],
        "Env": ["PATH=/bin", "FROM_IMAGE=yes"],
        "WorkingDir": "/data",
    });
    write_oci_image_with_config(
        &src,
        "v1",
        &[base_layer().unwrap()],
        TestCompression::Gzip,
        config,
    )
    .unwrap();
    host.convert(&src, "v1", "ep:lazy");
    host.start_daemon();
    let run = |args: &[&str]| {
        let out = host.lazyrun(&[&["--rm"], args].concat());
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(run(&["ep:lazy"]), "ep default\n");
    assert_eq!(run(&["ep:lazy", "x", "y"]), "ep x y\n");
    assert_eq!(
        run(&[
            "--entrypoint",
            "/bin/sh",
            "ep:lazy",
            "-c",
            "echo $FROM_IMAGE; busybox pwd"
        ]),
        "yes\n/data\n"
    );
    assert_eq!(
        run(&["--entrypoint", "", "ep:lazy", "echo", "plain"]),
        "plain\n"
    );
    let out = host.lazyrun(&["--rm", "--entrypoint", "", "ep:lazy"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no command"), "{}", stderr(&out));
}

#[test]
fn privileged_volumes_names_ps_and_rm() {
    require_privileges!();
    let host = Host::with_sample();
    let shared = host.work.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in.txt"), "from the host\n").unwrap();
    let rw = format!("{}:/mnt/rw", shared.display());
    let ro = format!("{}:/mnt/ro:ro", shared.display());
    let out = host.lazyrun(&[
        "--name", "keeper", "-v", &rw, "-v", &ro, "sample:lazy", "sh", "-c",
        "cat /mnt/ro/in.txt; echo written > /mnt/rw/out.txt; echo x > /mnt/ro/no.txt; echo $?; echo upper > /etc/motd",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("from the host\n"),
        "{}",
        stdout(&out)
    );
    assert_ne!(
        stdout(&out).lines().last(),
        Some("0"),
        "ro bind refused the write"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("out.txt")).unwrap(),
        "written\n"
    );
    assert!(!shared.join("no.txt").exists());

    // Kept without --rm: listed, its name taken, its upper dir holds the write.
    let ps = host.lazyctl(&["ps", "-a"]);
    let listing = stdout(&ps);
    assert!(
        listing.contains("keeper") && listing.contains("exited (0)"),
        "{listing}"
    );
    assert!(
        stdout(&host.lazyctl(&["ps"])).lines().count() == 1,
        "only the header: none running"
    );
    let out = host.lazyrun(&["--name", "keeper", "sample:lazy", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    let rm = host.lazyctl(&["rm", "keeper"]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    host.assert_no_container_left();
    let rm = host.lazyctl(&["rm", "keeper"]);
    assert!(!rm.status.success() && stderr(&rm).contains("no such container"));
}

#[test]
fn privileged_hostname_hosts_and_resolv_conf_are_the_containers() {
    require_privileges!();
    let host = Host::with_sample();
    for runtime in ["builtin", "runc"] {
        let out = host.lazyrun(&[
            "--rm",
            "--runtime",
            runtime,
            "--net",
            "none",
            "--hostname",
            "box",
            "sample:lazy",
            "cat",
            "/etc/hostname",
            "/etc/hosts",
        ]);
        assert_eq!(code(&out), 0, "{runtime}: {}", stderr(&out));
        let shown = stdout(&out);
        assert!(
            shown.starts_with("box\n")
                && shown.contains("127.0.0.1\tlocalhost\n")
                && shown.contains("\tbox\n"),
            "{runtime}: {shown}"
        );
    }
    let out = host.lazyrun(&[
        "--rm",
        "--net",
        "host",
        "sample:lazy",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(stdout(&out), host_resolv);
    host.assert_no_container_left();
}

#[test]
fn privileged_rm_cleans_up_after_a_killed_lazyrun() {
    require_privileges!();
    let host = Host::with_sample();
    let mut child = host
        .command(&[
            "--name",
            "victim",
            "sample:lazy",
            "sh",
            "-c",
            "echo up; exec cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "up\n");
    child.kill().unwrap();
    child.wait().unwrap();
    let listing = stdout(&host.lazyctl(&["ps", "-a"]));
    assert!(
        listing.contains("victim") && listing.contains("dead"),
        "{listing}"
    );
    let rm = host.lazyctl(&["rm", "victim"]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    host.assert_no_container_left();
}

#[test]
fn privileged_lazyrun_starts_lazyfsd_when_none_runs() {
    require_privileges!();
    let host = Host::new();
    let src = host.work.path().join("src");
    write_oci_image(&src, "v1", &[base_layer().unwrap()], TestCompression::Gzip).unwrap();
    host.convert(&src, "v1", "sample:lazy");
    let out = host.lazyrun(&["--rm", "sample:lazy", "cat", "/etc/motd"]);
    // Stop the daemon lazyrun started (found by our own config file) before
    // asserting, so that a failure leaves nothing behind.
    let config = host.files.config.display().to_string();
    let started = daemons_using(&config);
    for pid in &started {
        nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }
    for pid in &started {
        wait_gone(*pid);
    }
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "welcome to the lazy test image\n");
    assert_eq!(started.len(), 1, "one lazyfsd was started");
}

/// lazyfsd processes whose command line names `config`.
fn daemons_using(config: &str) -> Vec<nix::unistd::Pid> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("lazyfsd") && cmdline.contains(config) {
            pids.push(nix::unistd::Pid::from_raw(pid));
        }
    }
    pids
}

fn wait_gone(pid: nix::unistd::Pid) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while nix::sys::signal::kill(pid, None).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "lazyfsd {pid} did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
