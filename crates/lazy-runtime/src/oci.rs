//! Handing a container to an external OCI runtime (runc, crun): an OCI
//! bundle with the same isolation the built-in runtime sets up, and a
//! foreground `RUNTIME run`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability as OciCapability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::caps::DOCKER_DEFAULT_CAPS;
use crate::cgroup::PARENT;
use crate::error::RuntimeError;
use crate::mounts::{MASKED_PATHS, READONLY_PATHS};
use crate::signals::SignalForwarding;
use crate::spec::{ContainerSpec, ExitStatus, NetworkMode};

/// Writes an OCI runtime bundle for `spec` into `bundle_dir` (created if
/// missing): `config.json` with `root.path` = the spec's rootfs, the same
/// namespaces, mounts, masked and read-only paths, capabilities,
/// `noNewPrivileges`, user, env, cwd, args, hostname, `RLIMIT_NOFILE` (the
/// caller's, which the built-in runtime inherits) and cgroup limits, with
/// the cgroup at `/lazyrun/<id>`. With a state dir, its `hostname`, `hosts`
/// and `resolv.conf` are written and their mount points in the rootfs
/// prepared, as [`crate::run`] does.
pub fn write_oci_bundle(spec: &ContainerSpec, bundle_dir: &Path) -> Result<(), RuntimeError> {
    spec.validate()?;
    let mut spec = spec.clone();
    crate::etc_files::add_binds(&mut spec)?;
    let config_path = bundle_dir.join("config.json");
    let bundle_err = |reason: String| RuntimeError::OciBundle {
        path: config_path.clone(),
        reason,
    };
    std::fs::create_dir_all(bundle_dir).map_err(|e| RuntimeError::OciBundle {
        path: bundle_dir.to_path_buf(),
        reason: format!("create directory: {e}"),
    })?;
    let config = oci_config(&spec).map_err(|e| bundle_err(e.to_string()))?;
    config
        .save(&config_path)
        .map_err(|e| bundle_err(e.to_string()))
}

/// The `config.json` content for `spec`.
fn oci_config(spec: &ContainerSpec) -> Result<Spec, OciSpecError> {
    let default_caps = DOCKER_DEFAULT_CAPS
        .iter()
        .map(|cap| {
            let name = cap.to_string();
            OciCapability::from_str(name.trim_start_matches("CAP_"))
                .map_err(|e| OciSpecError::Other(format!("capability {name}: {e}")))
        })
        .collect::<Result<std::collections::HashSet<_>, _>>()?;
    // As docker: a non-root user keeps the bounding set only.
    let granted = if spec.user.uid == 0 {
        default_caps.clone()
    } else {
        Default::default()
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(default_caps)
        .permitted(granted.clone())
        .effective(granted)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()?;
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_err(|e| OciSpecError::Other(format!("getrlimit(RLIMIT_NOFILE): {e}")))?;
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(soft)
        .hard(hard)
        .build()?;
    let user = UserBuilder::default()
        .uid(spec.user.uid)
        .gid(spec.user.gid)
        .additional_gids(spec.user.additional_gids.clone())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(spec.tty)
        .user(user)
        .args(spec.args.clone())
        .env(spec.effective_env())
        .cwd(spec.cwd.clone())
        .capabilities(capabilities)
        .no_new_privileges(true)
        .rlimits(vec![nofile])
        .build()?;

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
    ];
    if spec.network == NetworkMode::None {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec())
        .resources(resources(spec)?)
        .cgroups_path(PathBuf::from(format!("/{PARENT}/{}", spec.id)))
        .build()?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(spec.rootfs.clone())
                .readonly(spec.read_only_rootfs)
                .build()?,
        )
        .hostname(spec.effective_hostname())
        .process(process)
        .mounts(mounts(spec)?)
        .linux(linux)
        .build()
}

/// `linux.resources`: devices as docker (deny all; the runtime adds the
/// standard nodes), memory without swap, pids, CFS quota.
fn resources(spec: &ContainerSpec) -> Result<oci_spec::runtime::LinuxResources, OciSpecError> {
    let limits = &spec.resources;
    let too_big = |what: &str| OciSpecError::Other(format!("{what} out of range"));
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let mut builder = LinuxResourcesBuilder::default().devices(vec![deny_all]);
    if let Some(bytes) = limits.memory_bytes {
        let bytes = i64::try_from(bytes).map_err(|_| too_big("memory"))?;
        builder = builder.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .swap(bytes)
                .build()?,
        );
    }
    if let Some(max) = limits.pids_limit {
        let max = i64::try_from(max).map_err(|_| too_big("pids limit"))?;
        builder = builder.pids(LinuxPidsBuilder::default().limit(max).build()?);
    }
    if let Some(cpus) = limits.cpus {
        let quota =
            i64::try_from(crate::cgroup::cfs_quota_us(cpus)).map_err(|_| too_big("cpus"))?;
        let cpu = LinuxCpuBuilder::default()
            .quota(quota)
            .period(crate::cgroup::CFS_PERIOD_US)
            .build()?;
        builder = builder.cpu(cpu);
    }
    builder.build()
}

/// The mounts the built-in runtime makes, in OCI form.
fn mounts(spec: &ContainerSpec) -> Result<Vec<Mount>, OciSpecError> {
    let mount = |destination: &str, typ: &str, source: &str, options: &[&str]| {
        MountBuilder::default()
            .destination(destination)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ];
    for bind in &spec.binds {
        let mode = if bind.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(bind.destination.clone())
                .typ("bind")
                .source(bind.source.clone())
                .options(vec!["rbind".to_string(), mode.to_string()])
                .build()?,
        );
    }
    Ok(mounts)
}

/// Runs the bundle in `bundle_dir` with `runtime` (`runc`, `crun`, or a
/// path to one) as `RUNTIME run --bundle DIR ID` in the foreground, stdio
/// inherited, forwarding SIGINT, SIGTERM, … to it; then deletes the
/// container. The runtime reports a container killed by signal N as exit
/// code 128+N, which comes back as [`ExitStatus::Code`].
///
/// crun (up to at least 1.8) refuses "hybrid" hosts whose cgroup v2 mount
/// has any controller (`cgroups in hybrid mode not supported`); on such a
/// host crun runs in a private mount namespace where that v2 mount is
/// unmounted, so it uses the v1 hierarchies.
pub fn run_with_oci_runtime(
    runtime: &Path,
    bundle_dir: &Path,
    id: &str,
) -> Result<ExitStatus, RuntimeError> {
    let runtime_err = |op| {
        move |source| RuntimeError::OciRuntime {
            runtime: runtime.to_path_buf(),
            op,
            source,
        }
    };
    let mut command = Command::new(runtime);
    command.arg("run").arg("--bundle").arg(bundle_dir).arg(id);
    if is_crun(runtime)
        && let Some(v2_mount) = hybrid_cgroup2_with_controllers()
    {
        hide_mount_from(&mut command, &v2_mount).map_err(runtime_err("hide cgroup v2 mount"))?;
    }
    let mut child = command.spawn().map_err(runtime_err("spawn"))?;
    let forwarding = SignalForwarding::install(child.id());
    let status = child.wait().map_err(runtime_err("wait"));
    drop(forwarding);
    // A foreground run removes the container when it ends; this only
    // cleans up after a runtime that died early.
    let _ = Command::new(runtime)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(ExitStatus::Code(code)),
        (None, Some(signal)) => Ok(ExitStatus::Signaled(signal)),
        (None, None) => Err(runtime_err("wait")(std::io::Error::other("no exit status"))),
    }
}

/// Whether `runtime` is crun (by file name).
fn is_crun(runtime: &Path) -> bool {
    runtime
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("crun"))
}

/// The cgroup2 mount point of a hybrid host (v1 hierarchies plus a v2 mount
/// beside them) whose v2 hierarchy has controllers.
fn hybrid_cgroup2_with_controllers() -> Option<PathBuf> {
    let mounts = crate::cgroup::CgroupMounts::from_host().ok()?;
    let (root, controllers) = mounts.v2?;
    let hybrid = !mounts.v1.is_empty() && root != Path::new("/sys/fs/cgroup");
    (hybrid && !controllers.is_empty()).then_some(root)
}

/// Makes `command` run in a private mount namespace without `mount_point`.
fn hide_mount_from(command: &mut Command, mount_point: &Path) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;

    use nix::mount::{MntFlags, MsFlags};

    let target = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes())?;
    // SAFETY: runs between fork and exec; only raw syscalls on a CString
    // prepared before the fork (no allocation, no locks).
    unsafe {
        command.pre_exec(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            let none: Option<&std::ffi::CStr> = None;
            nix::mount::mount(none, c"/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)?;
            nix::mount::umount2(target.as_c_str(), MntFlags::MNT_DETACH)?;
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BindMount, User};

    fn config_json(spec: &ContainerSpec) -> serde_json::Value {
        serde_json::to_value(oci_config(spec).unwrap()).unwrap()
    }

    #[test]
    fn config_mirrors_the_builtin_runtime() {
        let mut spec = ContainerSpec::new("c1", "/srv/rootfs", vec!["sh".into()]);
        spec.network = NetworkMode::None;
        spec.user = User {
            uid: 1000,
            gid: 100,
            additional_gids: vec![5],
            home: None,
        };
        spec.binds = vec![BindMount {
            source: "/data".into(),
            destination: "/mnt".into(),
            read_only: true,
        }];
        spec.resources.memory_bytes = Some(32 << 20);
        spec.resources.cpus = Some(1.5);
        let config = config_json(&spec);
        let namespaces: Vec<&str> = config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ns| ns["type"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["pid", "mount", "ipc", "uts", "network"]);
        assert_eq!(config["root"]["path"], "/srv/rootfs");
        assert_eq!(config["hostname"], "c1");
        assert_eq!(config["process"]["user"]["uid"], 1000);
        assert_eq!(config["process"]["noNewPrivileges"], true);
        let caps = &config["process"]["capabilities"];
        assert_eq!(caps["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(
            caps["effective"].as_array().unwrap().len(),
            0,
            "non-root keeps no effective caps"
        );
        assert_eq!(config["linux"]["resources"]["memory"]["limit"], 32 << 20);
        assert_eq!(config["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(config["linux"]["cgroupsPath"], "/lazyrun/c1");
        let bind = config["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(bind["options"], serde_json::json!(["rbind", "ro"]));

        spec.network = NetworkMode::Host;
        spec.user = User::root();
        let config = config_json(&spec);
        assert_eq!(config["linux"]["namespaces"].as_array().unwrap().len(), 4);
        let caps = &config["process"]["capabilities"];
        assert_eq!(caps["effective"].as_array().unwrap().len(), 14);
    }

    #[test]
    fn bundle_mounts_the_etc_files_before_user_binds() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        let mut spec = ContainerSpec::new("c1", &rootfs, vec!["sh".into()]);
        spec.state_dir = Some(dir.path().join("state"));
        spec.read_only_rootfs = true;
        spec.binds = vec![BindMount {
            source: dir.path().to_path_buf(),
            destination: "/etc/resolv.conf".into(),
            read_only: false,
        }];
        let bundle = dir.path().join("bundle");
        write_oci_bundle(&spec, &bundle).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let binds: Vec<_> = config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == "bind")
            .map(|m| {
                let source = m["source"].as_str().unwrap();
                let source = source.strip_prefix(dir.path().to_str().unwrap()).unwrap();
                (
                    m["destination"].as_str().unwrap(),
                    source,
                    m["options"][1].clone(),
                )
            })
            .collect();
        assert_eq!(
            binds,
            [
                ("/etc/hostname", "/state/hostname", "ro".into()),
                ("/etc/hosts", "/state/hosts", "ro".into()),
                ("/etc/resolv.conf", "", "rw".into()),
            ],
            "the user's resolv.conf wins"
        );
        assert!(rootfs.join("etc/hosts").is_file(), "mount point prepared");
    }
}
