//! `lazyrun`: run a container from a lazy image (see [`args::RunArgs`]).

pub mod args;
mod daemon;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lazy_control::config::{DEFAULT_CONFIG, DaemonConfig};
use lazy_control::{AttachOptions, AttachedImage, ControlClient};
use lazy_oci::spec::ImageConfiguration;
use lazy_runtime::overlay::OverlayMount;
use lazy_runtime::{BindMount, ContainerSpec, NetworkMode, Resources, RuntimeError};

use args::{Network, RunArgs, RuntimeKind};
use lazy_runtime::containers::{ContainerRecord, ContainerStore};
use lazy_runtime::process::{Process, ProcessOptions, env_file, env_option, process};

/// lazyrun's own failures (docker's code for them).
const EXIT_LAZYRUN_FAILED: i32 = 125;

/// Runs `lazyrun` with parsed arguments; returns the exit code.
pub fn main(args: RunArgs) -> i32 {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lazyrun: {e:#}");
            e.downcast_ref::<RuntimeError>()
                .map_or(EXIT_LAZYRUN_FAILED, RuntimeError::docker_exit_code)
        }
    }
}

fn run(args: &RunArgs) -> anyhow::Result<i32> {
    let config = load_config(&args.config)?;
    let prepared = prepare(args, config)?;
    run_prepared(args, prepared)
}

/// The configuration file `path` (the default one may be absent).
pub fn load_config(path: &Path) -> anyhow::Result<DaemonConfig> {
    let explicit = path.as_os_str() != DEFAULT_CONFIG;
    Ok(DaemonConfig::load(path, explicit)?)
}

/// A container with everything decided that can be before its process
/// starts: the image attached (lazyfsd started if need be), the process as
/// docker's rules make it from the image config and the options.
pub struct Prepared {
    config: DaemonConfig,
    /// The daemon that attached the image.
    pub daemon: ControlClient,
    /// The image, as resolved against the default registry.
    pub image: String,
    attached: AttachedImage,
    proc: Process,
    binds: Vec<BindMount>,
    resources: Resources,
}

/// Checks the options, attaches the image and decides the process: all of
/// `lazyrun` before the container exists. `lazyctl record` runs through
/// here and [`run_prepared`] too, so it records what `lazyrun` reads.
pub fn prepare(args: &RunArgs, config: DaemonConfig) -> anyhow::Result<Prepared> {
    let resources = resources(args)?;
    let binds = args
        .volume
        .iter()
        .map(|v| bind(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(env_file(file)?);
    }
    for entry in &args.env {
        env.extend(env_option(entry)?);
    }
    let image = resolve_image(&args.image, &config.run.default_registry);

    let daemon = daemon::ensure_daemon(&config, &args.config)?;
    let options = AttachOptions {
        prefetch: args.prefetch,
        pull: args.pull,
        ..AttachOptions::default()
    };
    let attached = daemon.attach(&image, options)?;
    let image_config: ImageConfiguration = serde_json::from_str(&attached.config)
        .with_context(|| format!("{image}: the image config is not valid"))?;
    let proc = process(
        &image_config,
        &ProcessOptions {
            command: &args.command,
            entrypoint: args.entrypoint.as_deref(),
            env,
            workdir: args.workdir.as_deref(),
            user: args.user.as_deref(),
        },
    )?;
    Ok(Prepared {
        config,
        daemon,
        image,
        attached,
        proc,
        binds,
        resources,
    })
}

/// Creates the container, runs it to its end and removes it with `--rm`;
/// returns its exit code.
pub fn run_prepared(args: &RunArgs, prepared: Prepared) -> anyhow::Result<i32> {
    let Prepared {
        config,
        daemon,
        image,
        attached,
        proc,
        binds,
        resources,
    } = prepared;
    let failures_before = verification_failures(&daemon);
    let store = ContainerStore::new(&config.run.containers_dir);
    let mut record = store.create(args.name.as_deref(), &image, &proc.args)?;
    let _container =
        tracing::info_span!("container", id = %&record.id[..12], name = %record.name, %image)
            .entered();
    let dir = store.dir_of(&record.id);
    let result = run_in_overlay(args, &attached, &dir, &record, |rootfs| {
        let user = match proc.user.as_str() {
            "" => lazy_runtime::User::root(),
            u => lazy_runtime::resolve_user(rootfs, u)?,
        };
        Ok(ContainerSpec {
            id: record.id.clone(),
            rootfs: rootfs.to_owned(),
            args: proc.args.clone(),
            env: proc.env.clone(),
            cwd: proc.cwd.clone(),
            user,
            hostname: args.hostname.clone().unwrap_or_default(),
            network: match args.net {
                Network::Host => NetworkMode::Host,
                Network::None => NetworkMode::None,
            },
            binds: binds.clone(),
            read_only_rootfs: args.read_only,
            tty: args.tty,
            resources: resources.clone(),
            // hostname, hosts and resolv.conf beside the overlay's dirs.
            state_dir: Some(dir.clone()),
        })
    });
    // Readers in the container get EIO for corrupt chunks; say why here.
    let failures_after = verification_failures(&daemon);
    if let (Some(before), Some(after)) = (failures_before, failures_after)
        && after > before
    {
        eprintln!(
            "lazyrun: {} chunk(s) failed verification while the container ran: the image \
             in the registry is damaged (the lazyfsd log names files and chunks)",
            after - before
        );
    }
    record.exit_code = Some(match &result {
        Ok(code) => *code,
        Err(e) => e
            .downcast_ref::<RuntimeError>()
            .map_or(EXIT_LAZYRUN_FAILED, RuntimeError::docker_exit_code),
    });
    if args.rm {
        if let Err(e) = store.remove(&record, false) {
            eprintln!("lazyrun: removing container {}: {e:#}", record.name);
        }
    } else if let Err(e) = store.save(&record) {
        eprintln!("lazyrun: {e:#}");
    }
    result
}

/// Mounts the container's overlay, runs it, unmounts (the upper dir stays
/// until the container is removed).
fn run_in_overlay(
    args: &RunArgs,
    attached: &AttachedImage,
    dir: &Path,
    record: &ContainerRecord,
    spec: impl FnOnce(&Path) -> anyhow::Result<ContainerSpec>,
) -> anyhow::Result<i32> {
    let lowers: Vec<PathBuf> = attached
        .layers
        .iter()
        .rev()
        .map(|l| PathBuf::from(&l.path))
        .collect();
    let overlay =
        OverlayMount::mount(dir, &lowers).context("mounting the container's root filesystem")?;
    let spec = spec(&overlay.merged)?;
    if !args.interactive && !args.tty {
        stdin_from_dev_null()?;
    }
    let status = match args.runtime {
        RuntimeKind::Builtin => {
            let init =
                std::env::current_exe().context("locating lazyrun for the container init")?;
            lazy_runtime::run(&spec, &init)?
        }
        RuntimeKind::Runc | RuntimeKind::Crun => {
            let name = if args.runtime == RuntimeKind::Runc {
                "runc"
            } else {
                "crun"
            };
            let bundle = dir.join("bundle");
            lazy_runtime::write_oci_bundle(&spec, &bundle)?;
            lazy_runtime::run_with_oci_runtime(Path::new(name), &bundle, &record.id)?
        }
    };
    drop(overlay);
    Ok(status.docker_exit_code())
}

/// The daemon's verification failure counter (host-wide), if it answers.
fn verification_failures(daemon: &ControlClient) -> Option<u64> {
    daemon.stats().ok().map(|s| s.verification_failures)
}

/// Without `-i`, the container reads an empty stdin, as with docker.
fn stdin_from_dev_null() -> anyhow::Result<()> {
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    nix::unistd::dup2_stdin(&null).context("redirecting stdin")?;
    Ok(())
}

/// `r-base` → `<default registry>/r-base`; references that name a registry
/// (first component with `.` or `:`, or `localhost`) are kept.
pub fn resolve_image(image: &str, default_registry: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    let names_registry =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if names_registry || default_registry.is_empty() {
        image.to_owned()
    } else {
        format!("{default_registry}/{image}")
    }
}

/// `-v HOST:CONTAINER[:ro|rw]`; a missing host directory is created, as
/// docker does.
fn bind(spec: &str) -> anyhow::Result<BindMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, read_only) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => bail!("invalid volume {spec:?}: expected HOST:CONTAINER[:ro|rw]"),
    };
    let (host, container) = (Path::new(host), PathBuf::from(container));
    if !host.is_absolute() || !container.is_absolute() {
        bail!("invalid volume {spec:?}: both paths must be absolute");
    }
    if !host.exists() {
        std::fs::create_dir_all(host)
            .with_context(|| format!("creating volume source {}", host.display()))?;
    }
    Ok(BindMount {
        source: host.canonicalize()?,
        destination: container,
        read_only,
    })
}

fn resources(args: &RunArgs) -> anyhow::Result<Resources> {
    let memory_bytes = match &args.memory {
        Some(m) => Some(
            crate::size::parse_size(m)
                .map_err(|e| anyhow::anyhow!("invalid --memory {m:?}: {e}"))?,
        ),
        None => None,
    };
    if let Some(cpus) = args.cpus.filter(|c| !(c.is_finite() && *c > 0.0)) {
        bail!("invalid --cpus {cpus}: must be a positive number");
    }
    if args.pids_limit == Some(0) {
        bail!("invalid --pids-limit 0: must be positive");
    }
    Ok(Resources {
        memory_bytes,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_use_the_default_registry() {
        assert_eq!(
            resolve_image("r-base", "localhost:5000"),
            "localhost:5000/r-base"
        );
        assert_eq!(
            resolve_image("lib/r-base:4", "reg.io"),
            "reg.io/lib/r-base:4"
        );
        assert_eq!(resolve_image("localhost/x", "reg.io"), "localhost/x");
        assert_eq!(
            resolve_image("127.0.0.1:5000/x:lazy", "reg.io"),
            "127.0.0.1:5000/x:lazy"
        );
    }

    #[test]
    fn volumes_parse_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("new");
        let b = bind(&format!("{}:/data:ro", host.display())).unwrap();
        assert!(b.read_only && host.is_dir(), "created and read-only");
        assert_eq!(b.destination, PathBuf::from("/data"));
        assert!(bind("relative:/data").is_err());
        assert!(bind(&format!("{}:/data:rx", host.display())).is_err());
        assert!(bind("/a").is_err());
    }
}
