//! Wiring: cache, registry client, FUSE session, control socket, metrics.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fuser::{Config, MountOption, SessionACL};
use lazy_cache::{CacheConfig, CacheMetrics, ChunkCache, ReadAround};
use lazy_cas::{CasClient, CasOptions};
use lazy_oci::{ClientOptions, RegistryClient};

use lazy_control::{ControlClient, DaemonConfig};

use crate::fuse::LazyFuse;
use crate::fuse::passthrough::BackingTable;
use crate::source::Stores;
use crate::state::{DaemonState, StateParts};
use crate::takeover::{self, Handover, MountRole};

/// The configured HTTP stores, sharing the registry client's proxies.
fn open_stores(config: &DaemonConfig, client: &RegistryClient) -> anyhow::Result<Stores> {
    let mut stores = HashMap::new();
    for (name, store) in &config.stores {
        let options = CasOptions {
            name: name.clone(),
            urls: store.urls.clone(),
            timeout: Duration::from_secs(config.registry.timeout_secs.max(1)),
            retries: config.registry.retries,
            backoff: Duration::from_secs(config.proxy.backoff_secs),
            parallel: config.max_concurrent_fetches.max(1),
        };
        let routes = match &store.proxies {
            None => client.routes(),
            Some(proxies) => client
                .routes_through(proxies)
                .with_context(|| format!("store {name}: proxies"))?,
        };
        let cas = CasClient::new(options, routes).with_context(|| format!("store {name}"))?;
        stores.insert(name.clone(), cas);
    }
    Ok(Stores::new(stores))
}

/// Runs lazyfsd until SIGINT or SIGTERM; calls `ready` once the mount and
/// the control socket are up.
pub fn run(config: &DaemonConfig, ready: impl FnOnce()) -> anyhow::Result<()> {
    if ControlClient::new(&config.socket, Duration::from_secs(2)).is_up() {
        bail!(
            "lazyfsd is already running (socket {})",
            config.socket.display()
        );
    }
    // Under `lazyfsd --supervise`: the socket to the supervisor, and the
    // live mounts' descriptors when this daemon replaces another.
    let supervisor = takeover::inherited_fd(takeover::SUPERVISOR_FD_ENV)?;
    let taken = takeover::inherited_fd(MountRole::Main.env())?;
    let taken_store = takeover::inherited_fd(MountRole::Store.env())?;
    if supervisor.is_some() {
        crate::supervisor::unblock_inherited_signals();
    }
    std::fs::create_dir_all(&config.cache_dir)
        .with_context(|| format!("creating {}", config.cache_dir.display()))?;
    if taken.is_none() {
        clean_stale_mount(&config.mountpoint)?;
    }
    std::fs::create_dir_all(&config.mountpoint)
        .with_context(|| format!("creating {}", config.mountpoint.display()))?;

    let registry = prometheus::Registry::new();
    let metrics = CacheMetrics::register(&registry)?;
    let attached_gauge = prometheus::IntGauge::new("lazyfs_attached_layers", "Layers attached")?;
    registry.register(Box::new(attached_gauge.clone()))?;
    let cache_config = CacheConfig {
        quota_bytes: config.quota_bytes().map_err(anyhow::Error::msg)?,
        hot_set_bytes: config.hot_set_bytes().map_err(anyhow::Error::msg)?,
        fetch_timeout: Duration::from_secs(config.fetch_timeout_secs.max(1)),
        max_concurrent_fetches: config.max_concurrent_fetches.max(1),
        read_around: match config.read_around_setting().map_err(anyhow::Error::msg)? {
            None => ReadAround::Auto,
            Some(0) => ReadAround::Off,
            Some(bytes) => ReadAround::Bytes(bytes),
        },
        ..CacheConfig::new(&config.cache_dir)
    };
    let cache = ChunkCache::open(cache_config, metrics.clone()).context("opening the cache")?;
    let client = RegistryClient::new(ClientOptions {
        insecure_hosts: config.registry.insecure.clone(),
        timeout: Duration::from_secs(config.registry.timeout_secs.max(1)),
        retries: config.registry.retries,
        docker_config: config.registry.docker_config.clone(),
        mirrors: config.registry.mirrors.clone().into_iter().collect(),
        proxies: config.proxy.servers.clone(),
        proxy_backoff: Duration::from_secs(config.proxy.backoff_secs),
        ..ClientOptions::default()
    })?;
    let stores = open_stores(config, &client)?;
    let parts = StateParts {
        cache: cache.clone(),
        metrics,
        client,
        stores,
        attached_gauge,
        prefetch_default: config.prefetch,
    };
    let state = Arc::new(
        DaemonState::open(&config.cache_dir, &config.mountpoint, parts)
            .with_context(|| format!("opening the state in {}", config.cache_dir.display()))?,
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("lazyfsd-io")
        .enable_all()
        .build()?;
    let fs = LazyFuse {
        table: state.table(),
        cache,
        runtime: runtime.handle().clone(),
        recorder: state.recorder(),
        libraries: config.prefetch_libraries,
        nearby: config.prefetch_nearby,
        passthrough: config.passthrough.then(BackingTable::default),
        zero_message_opendir: false,
        zero_message_open: false,
        offer: Arc::default(),
    };
    let offer = Arc::clone(&fs.offer);
    let mut fuse_config = Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName("lazyfs".into()),
        MountOption::Subtype("lazyfs".into()),
        MountOption::RO,
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    fuse_config.acl = SessionACL::All;
    fuse_config.n_threads = Some(config.fuse_threads.max(1));
    // Supervised, every request is read from the one descriptor the
    // supervisor also holds, so that none is lost when this process dies.
    fuse_config.clone_fd = supervisor.is_none();
    let background = takeover::start_session(
        fs,
        &offer,
        fuse_config,
        Handover {
            role: MountRole::Main,
            mountpoint: &config.mountpoint,
            cache_dir: &config.cache_dir,
            supervisor: supervisor.as_ref().map(AsFd::as_fd),
            taken,
        },
    )?;
    state.set_notifier(background.notifier());
    let read_ahead = config.read_ahead_kib().map_err(anyhow::Error::msg)?;
    if let Err(e) = set_read_ahead(&config.mountpoint, read_ahead) {
        tracing::warn!("cannot set read-ahead to {read_ahead} KiB: {e:#}");
    }

    let store_how = Handover {
        role: MountRole::Store,
        mountpoint: &config.layer_store,
        cache_dir: &config.cache_dir,
        supervisor: supervisor.as_ref().map(AsFd::as_fd),
        taken: taken_store,
    };
    let store = match config.layer_store.as_os_str().is_empty() {
        true => {
            if let (Some(socket), Some(taken)) = (&supervisor, store_how.taken) {
                // Served before, not now: the old mount must fail, not hang,
                // so no descriptor of it may stay open.
                drop(taken);
                takeover::release(socket.as_fd(), MountRole::Store)?;
            }
            None
        }
        false => {
            let session = crate::store::mount(
                Arc::clone(&state),
                runtime.handle().clone(),
                &config.mountpoint,
                store_how,
            )?;
            Some((session, config.layer_store.clone()))
        }
    };
    let cache_for_stop = state.cache().clone();
    // Everything the main thread logs from here on belongs to the mount.
    let _mount = tracing::info_span!("mount", mountpoint = %config.mountpoint.display()).entered();
    runtime.block_on(async {
        persist_use_times_every(state.cache().clone(), USE_TIMES_EVERY);
        let listener = crate::control::bind(&config.socket)
            .with_context(|| format!("binding control socket {}", config.socket.display()))?;
        tokio::spawn(crate::control::serve(listener, Arc::clone(&state)));
        if !config.metrics_address.is_empty() {
            let metrics = tokio::net::TcpListener::bind(&config.metrics_address)
                .await
                .with_context(|| format!("binding metrics address {}", config.metrics_address))?;
            tokio::spawn(crate::metrics_http::serve(metrics, registry));
        }
        tracing::info!(mountpoint = %config.mountpoint.display(), socket = %config.socket.display(), layer_store = %config.layer_store.display(), "lazyfsd ready");
        ready();
        wait_for_signal().await
    })?;
    tracing::info!("lazyfsd stopping");
    let _ = std::fs::remove_file(&config.socket);
    let main = (background, config.mountpoint.clone());
    crate::shutdown::stop(main, store, &cache_for_stop, runtime);
    Ok(())
}

/// How often the chunks' times of last use are written to the index.
const USE_TIMES_EVERY: Duration = Duration::from_secs(10);

/// Writes the chunks' times of last use to the index every `period`, on a
/// blocking thread (see [`ChunkCache::persist_use_times`]).
fn persist_use_times_every(cache: ChunkCache, period: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let cache = cache.clone();
            let saved = tokio::task::spawn_blocking(move || cache.persist_use_times()).await;
            if let Ok(Err(e)) = saved {
                tracing::warn!("saving chunk use times: {e}");
            }
        }
    });
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Unmounts what a killed daemon left at `mountpoint` (a FUSE mount whose
/// daemon is gone answers ENOTCONN).
pub(crate) fn clean_stale_mount(mountpoint: &Path) -> anyhow::Result<()> {
    if is_mounted(mountpoint) {
        tracing::warn!("unmounting stale mount at {}", mountpoint.display());
        nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting stale mount at {}", mountpoint.display()))?;
    }
    Ok(())
}

/// Whether something is mounted at `mountpoint`.
pub(crate) fn is_mounted(mountpoint: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let target = mountpoint.to_string_lossy();
    mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_ref()))
}

/// Sets the kernel read-ahead of the FUSE mount at `mountpoint` through its
/// backing device info (`/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`): FUSE
/// cannot ask for more than the kernel offers at INIT.
fn set_read_ahead(mountpoint: &Path, kib: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)?.dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    std::fs::write(&bdi, kib.to_string()).with_context(|| format!("writing {bdi}"))
}
