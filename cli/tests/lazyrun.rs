//! `lazyrun` end to end: a real registry, a real lazyfsd, real overlay
//! mounts and namespaces; the sample image (busybox-static and test files).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lazy_fusefs::client::ControlClient;
use lazy_fusefs::protocol::{PullPolicy, Request, Response, StatsInfo};
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::{BIG_FILE_LEN, base_layer, noise, upper_layer};
use lazy_testkit::layout::{TestCompression, write_oci_image, write_oci_image_with_config};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;
use serde_json::json;

/// A host: registry, lazyfsd config (with a `[run]` section), daemon.
struct Host {
    work: tempfile::TempDir,
    registry: TestRegistry,
    files: DaemonFiles,
    daemon: Option<DaemonProcess>,
}

impl Host {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start().unwrap();
        let files = DaemonFiles::write(&work.path().join("d"), &registry.host(), "");
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(&files.config)
            .unwrap();
        write!(
            config,
            "[run]\ndefault_registry = {:?}\ncontainers_dir = {:?}\n",
            registry.host(),
            work.path().join("containers")
        )
        .unwrap();
        Self {
            work,
            registry,
            files,
            daemon: None,
        }
    }

    /// A host with the sample image converted as `sample:lazy` and lazyfsd up.
    fn with_sample() -> Self {
        let mut host = Self::new();
        let src = host.work.path().join("src");
        write_oci_image(
            &src,
            "v1",
            &[base_layer().unwrap(), upper_layer()],
            TestCompression::Gzip,
        )
        .unwrap();
        host.convert(&src, "v1", "sample:lazy");
        host.start_daemon();
        host
    }

    fn start_daemon(&mut self) {
        let binary = sibling("lazyfsd");
        self.daemon = Some(DaemonProcess::start(&binary, self.files.clone()));
    }

    fn convert(&self, layout: &Path, tag: &str, name: &str) {
        let out = Command::new(sibling("lazyctl"))
            .args(["convert", "--insecure", &self.registry.host()])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("{}/{name}", self.registry.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazyrun"));
        cmd.arg("--config").arg(&self.files.config).args(args);
        cmd
    }

    fn lazyrun(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn lazyrun_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn lazyctl(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        let config = self.files.config.to_str().unwrap();
        all.extend(["--config", config]);
        Command::new(sibling("lazyctl")).args(all).output().unwrap()
    }

    fn stats(&self) -> StatsInfo {
        let client = ControlClient::new(&self.files.socket, Duration::from_secs(30));
        match client.call(&Request::Stats) {
            Ok(Response::Stats(s)) => s,
            other => panic!("stats: {other:?}"),
        }
    }

    fn containers_dir(&self) -> PathBuf {
        self.work.path().join("containers")
    }

    /// Nothing of any container is left: no directory, no mount.
    fn assert_no_container_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.containers_dir())
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.containers_dir().display().to_string();
        assert!(
            !mounts.contains(&dir),
            "still mounted under {dir}:\n{mounts}"
        );
    }
}

/// Binaries built beside lazyrun by the workspace test run.
fn sibling(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_lazyrun")).with_file_name(name);
    assert!(
        path.exists(),
        "{} missing: run the workspace tests",
        path.display()
    );
    path
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("lazyrun exited, not killed")
}

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

#[test]
fn privileged_bad_input_gives_clear_errors_and_leaves_nothing() {
    require_privileges!();
    let mut host = Host::with_sample();
    let out = host.lazyrun(&["--rm", "no-such-image:lazy", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no-such-image"), "{}", stderr(&out));

    // An ordinary (not lazy) image: refused with the way out.
    let plain = host.work.path().join("plain");
    write_oci_image(
        &plain,
        "v1",
        &[base_layer().unwrap()],
        TestCompression::Gzip,
    )
    .unwrap();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", plain.display()))
        .arg(format!("docker://{}/plain:v1", host.registry.host()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = host.lazyrun(&["--rm", "plain:v1", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("lazyctl convert"), "{}", stderr(&out));

    for bad in [
        &["--memory", "lots", "sample:lazy", "true"][..],
        &["-v", "relative:/x", "sample:lazy", "true"],
        &["--name", "bad/name", "sample:lazy", "true"],
        &["-w", "relative", "sample:lazy", "true"],
    ] {
        let out = host.lazyrun(&[&["--rm"], bad].concat());
        assert_eq!(code(&out), 125, "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("lazyrun: "), "{}", stderr(&out));
    }
    let out = host.lazyrun(&["--no-such-option", "sample:lazy"]);
    assert_eq!(code(&out), 2, "clap usage error");

    let out = host.lazyrun(&["--rm", "sample:lazy", "cat", "/etc/motd"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Registry down: a cold image fails clearly, nothing is left mounted.
    host.registry.stop();
    let out = host.lazyrun(&["--rm", "other:lazy", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("other:lazy"), "{}", stderr(&out));
    host.assert_no_container_left();
    // An image run before runs without its registry, from the cache (as
    // docker runs a local image); --pull always insists on the registry.
    let out = host.lazyrun(&["--rm", "sample:lazy", "cat", "/etc/motd"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = host.lazyrun(&[
        "--rm",
        "--pull",
        "always",
        "sample:lazy",
        "cat",
        "/etc/motd",
    ]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("sample:lazy"), "{}", stderr(&out));
    let out = host.lazyrun(&["--rm", "--pull", "never", "other:lazy", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("never attached"), "{}", stderr(&out));
    host.assert_no_container_left();
    host.daemon.take();
}

#[test]
fn privileged_corrupt_chunk_mid_run_is_eio_and_reported() {
    require_privileges!();
    let host = Host::with_sample();
    let layers = match ControlClient::new(&host.files.socket, Duration::from_secs(30)).call(
        &Request::Attach {
            image: format!("{}/sample:lazy", host.registry.host()),
            pin: false,
            prefetch: None,
            with_config: false,
            pull: PullPolicy::Always,
            credentials: None,
        },
    ) {
        Ok(Response::Layers(l)) => l,
        other => panic!("{other:?}"),
    };
    let blob_path = host.registry.blob_data_path(&layers[0].digest);
    let blob = std::fs::read(&blob_path).unwrap();
    let meta = lazy_format::decode_meta(&blob).unwrap();
    let lazy_format::EntryKind::File { chunks, .. } = &meta.find(b"data/big.bin").unwrap().kind
    else {
        panic!("big.bin is a file")
    };
    // Damage a chunk in the middle of the file: the reader gets its first
    // bytes, then EIO.
    let record = meta.chunks[chunks[chunks.len() / 2] as usize];
    let mut tampered = blob.clone();
    tampered[usize::try_from(record.offset).unwrap()] ^= 0x5a;
    std::fs::write(&blob_path, tampered).unwrap();

    let out = host.lazyrun(&["--rm", "sample:lazy", "cat", "/data/big.bin"]);
    assert_eq!(code(&out), 1, "cat fails");
    assert!(
        stderr(&out).contains("Input/output error"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("failed verification"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.len() < BIG_FILE_LEN && !out.stdout.is_empty());
    host.assert_no_container_left();
}

#[test]
fn privileged_ten_containers_at_once_fetch_each_chunk_once() {
    require_privileges!();
    let host = Host::with_sample();
    // Attach first: the registry then serves chunk data only.
    assert_eq!(
        code(&host.lazyrun(&["--rm", "sample:lazy", "sh", "-c", ":"])),
        0
    );
    let served_before = settled_bytes_served(&host.registry);
    let fetched_before = host.stats().fetched_bytes;
    let children: Vec<_> = (0..10)
        .map(|_| {
            host.command(&["--rm", "sample:lazy", "cat", "/data/big.bin"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let expected = noise(BIG_FILE_LEN, 42);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            out.stdout == expected,
            "every container reads the right bytes"
        );
    }
    let stats = host.stats();
    assert_eq!(
        stats.fetched_chunks, stats.cache_chunks,
        "each chunk fetched once: {stats:?}"
    );
    assert_eq!(stats.evictions, 0);
    // The registry logs a request after answering it: give the log a moment.
    let fetched = stats.fetched_bytes - fetched_before;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host.registry.blob_bytes_served() - served_before != fetched
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        host.registry.blob_bytes_served() - served_before,
        fetched,
        "registry agrees"
    );
    host.assert_no_container_left();
}

/// Bytes served once the registry's access log has caught up (it logs a
/// request after answering it).
fn settled_bytes_served(registry: &TestRegistry) -> u64 {
    let mut last = registry.blob_bytes_served();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = registry.blob_bytes_served();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the registry log keeps growing");
}

#[test]
fn privileged_runc_and_crun_give_the_builtin_result() {
    require_privileges!();
    let host = Host::with_sample();
    let script = "busybox id; busybox hostname; cat /etc/motd; echo $GREETING; busybox pwd; exit 3";
    let results: Vec<(i32, String)> = ["builtin", "runc", "crun"]
        .iter()
        .map(|runtime| {
            let out = host.lazyrun(&[
                "--rm",
                "--runtime",
                runtime,
                "--hostname",
                "box",
                "-e",
                "GREETING=hello",
                "-w",
                "/data",
                "sample:lazy",
                "sh",
                "-c",
                script,
            ]);
            (code(&out), format!("{}{}", stdout(&out), stderr(&out)))
        })
        .collect();
    assert_eq!(results[0].0, 3, "{}", results[0].1);
    assert!(
        results[0].1.contains("uid=0(root)") && results[0].1.contains("box\n"),
        "{}",
        results[0].1
    );
    assert_eq!(results[1], results[0], "runc");
    assert_eq!(results[2], results[0], "crun");
    host.assert_no_container_left();
}
