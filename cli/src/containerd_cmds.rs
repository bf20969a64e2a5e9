//! `lazyctl pull --containerd` and `lazyctl containerd-config`: lazy images
//! on containerd nodes, through the lazyfs snapshotter
//! (`containerd-lazy-grpc`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lazy_containerd::{
    Blob, Containerd, DEFAULT_ADDRESS, DEFAULT_NAMESPACE, ImportProgress, LayerOutcome, LazyImage,
};
use lazy_control::{AttachOptions, ControlClient};
use lazy_image::{ImageStore, fetch_lazy_manifest};
use lazy_oci::{ImageLocation, Reference};

use crate::daemon_args::DaemonArgs;
use crate::progress::short;
use crate::registry_args::RegistryArgs;

/// The largest image config accepted.
const CONFIG_SIZE_LIMIT: u64 = 16 << 20;
/// The snapshotter's socket, as the systemd unit and README set it up.
const SNAPSHOTTER_SOCKET: &str = "/run/containerd-lazy-grpc/containerd-lazy-grpc.sock";

/// Pull a lazy image into containerd without downloading its layers.
///
/// Puts the manifest and config in containerd's content store, has the
/// lazyfs snapshotter attach every layer in lazyfsd (a remote snapshot:
/// nothing is downloaded) and creates the image, so that `ctr run
/// --snapshotter lazyfs IMAGE ID CMD` starts it at once. containerd must
/// have the lazyfs proxy plugin (see `lazyctl containerd-config`), and
/// containerd-lazy-grpc and lazyfsd must be running.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Lazy image in a registry (REGISTRY/REPO[:TAG|@DIGEST]).
    pub image: String,
    /// Pull into containerd (the only target for now).
    #[arg(long)]
    pub containerd: bool,
    /// containerd's socket.
    #[arg(long, value_name = "SOCKET", env = "CONTAINERD_ADDRESS", default_value = DEFAULT_ADDRESS)]
    pub address: PathBuf,
    /// containerd namespace (Kubernetes' CRI uses k8s.io).
    #[arg(long, value_name = "NS", env = "CONTAINERD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The name containerd's config gives the lazyfs proxy plugin.
    #[arg(long, value_name = "NAME", default_value = "lazyfs")]
    pub snapshotter: String,
    /// lazyfsd (its socket, and its `[registry]` settings).
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Registry connection options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Attaches the image in lazyfsd while fetching its manifest and config,
/// then imports it into containerd.
pub async fn pull(args: PullArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.containerd,
        "lazyctl pull needs a target: --containerd (to run the image with \
         `lazyrun`, no pull is needed)"
    );
    let reference: Reference = args.image.parse()?;
    let config = args.daemon.config()?;
    let client = args.registry.client_with(&config.registry)?;
    let store = ImageStore::open(&ImageLocation::Registry(reference.clone()), &client)?;
    let name = reference.to_string();
    let mut containerd = Containerd::connect(&args.address, &args.namespace).await?;
    let daemon = ControlClient::new(&config.socket, Duration::from_secs(300));
    let (image, attached) = tokio::join!(fetch_image(&store, &name), attach_image(&daemon, &name));
    let imported = match (image, attached) {
        (Ok(image), Ok(attached)) => {
            let bar = LayerBar::new(image.layers.len());
            let imported =
                lazy_containerd::import(&mut containerd, &args.snapshotter, &image, &bar).await;
            bar.finish();
            imported
                .map(|i| (i, image))
                .with_context(|| format!("pulling {name} into containerd"))
                .map_err(|e| (e, attached))
        }
        (Err(e), attached) => Err((e, attached.unwrap_or(Attached::Before))),
        (Ok(_), Err(e)) => Err((e, Attached::Before)),
    };
    let (imported, image) = match imported {
        Ok(done) => done,
        Err((e, attached)) => {
            if attached == Attached::Now {
                let name = name.clone();
                let _ = tokio::task::spawn_blocking(move || daemon.detach(&name)).await;
            }
            return Err(e);
        }
    };
    let made = imported
        .layers
        .iter()
        .filter(|o| **o == LayerOutcome::Attached)
        .count();
    println!(
        "{name}: {} layers ({made} new remote snapshots, {} already in containerd), no layer downloaded; manifest {}",
        imported.layers.len(),
        imported.layers.len() - made,
        short(&image.manifest.digest)
    );
    Ok(())
}

/// The manifest and config of a lazy image, as containerd is to store them.
async fn fetch_image(store: &ImageStore, name: &str) -> anyhow::Result<LazyImage> {
    let fetched = fetch_lazy_manifest(store, name).await.map_err(|e| {
        let hint = if matches!(e, lazy_image::LazyImageError::NotLazy { .. }) {
            "; or run it as a plain image: `ctr image pull --snapshotter lazyfs`"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
    })?;
    let config_desc = fetched.manifest.config();
    let config_digest = config_desc.digest().to_string();
    let config_bytes = store
        .fetch_blob(&config_digest, CONFIG_SIZE_LIMIT)
        .await
        .with_context(|| format!("fetching the config of {name}"))?;
    Ok(LazyImage {
        name: name.to_owned(),
        reference: name.to_owned(),
        layers: fetched
            .manifest
            .layers()
            .iter()
            .map(|l| l.digest().to_string())
            .collect(),
        manifest: Blob {
            media_type: fetched.media_type,
            digest: fetched.digest,
            bytes: fetched.bytes,
        },
        config: Blob {
            media_type: config_desc.media_type().to_string(),
            digest: config_digest,
            bytes: config_bytes,
        },
    })
}

/// Whether the image was attached in lazyfsd before this pull.
#[derive(Debug, PartialEq, Eq)]
enum Attached {
    Before,
    Now,
}

/// Attaches the whole image in lazyfsd before containerd asks for its
/// layers one by one: the layers' metadata is fetched concurrently, and
/// lazyfsd starts its prefetch (the image's prefetch record, as its config
/// says), which a layer-by-layer attach has no image for.
async fn attach_image(daemon: &ControlClient, name: &str) -> anyhow::Result<Attached> {
    let (daemon, image) = (daemon.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let before = daemon.list()?.iter().any(|l| l.image == image);
        daemon.attach(&image, AttachOptions::default())?;
        Ok::<_, lazy_control::ClientError>(if before {
            Attached::Before
        } else {
            Attached::Now
        })
    })
    .await
    .expect("attach task")
    .with_context(|| format!("attaching {name} in lazyfsd"))
}

/// One line per layer, and a bar on a terminal.
struct LayerBar {
    bar: ProgressBar,
}

impl LayerBar {
    fn new(layers: usize) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(layers).unwrap_or(u64::MAX)),
            ProgressDrawTarget::stderr(),
        );
        if !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("layers [{bar:30}] {pos}/{len} {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { bar }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl ImportProgress for LayerBar {
    fn layer_done(&self, index: usize, count: usize, digest: &str, outcome: LayerOutcome) {
        let how = match outcome {
            LayerOutcome::Attached => "remote snapshot made",
            LayerOutcome::Present => "already in containerd",
        };
        self.bar.println(format!(
            "layer {}/{count} {}: {how}",
            index + 1,
            short(digest)
        ));
        self.bar.inc(1);
    }
}

/// Print the containerd config that loads the lazyfs snapshotter.
///
/// Add the output to containerd's config (/etc/containerd/config.toml,
/// version 2) and restart containerd. The CRI part is for Kubernetes: it
/// makes lazyfs the snapshotter of the pods' images and passes the layer
/// labels the snapshotter needs.
#[derive(Debug, Args)]
pub struct ContainerdConfigArgs {
    /// containerd-lazy-grpc's socket.
    #[arg(long, value_name = "SOCKET", default_value = SNAPSHOTTER_SOCKET)]
    pub address: PathBuf,
    /// The name to give the snapshotter.
    #[arg(long, value_name = "NAME", default_value = "lazyfs")]
    pub snapshotter: String,
    /// Leave out the CRI (Kubernetes) settings.
    #[arg(long)]
    pub no_cri: bool,
}

/// Prints the snippet.
pub fn containerd_config(args: &ContainerdConfigArgs) -> anyhow::Result<()> {
    print!("{}", config_snippet(args));
    Ok(())
}

fn config_snippet(args: &ContainerdConfigArgs) -> String {
    let mut text = format!(
        "# lazyfs: lazy images as remote snapshots (containerd-lazy-grpc)\n\
         [proxy_plugins.{name}]\n  type = \"snapshot\"\n  address = \"{address}\"\n",
        name = args.snapshotter,
        address = args.address.display()
    );
    if !args.no_cri {
        text.push_str(&format!(
            "\n# Kubernetes (CRI): pods' images through lazyfs, with the layer labels\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  \
             snapshotter = \"{name}\"\n  disable_snapshot_annotations = false\n",
            name = args.snapshotter
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_names_the_socket_and_the_cri_settings() {
        let args = ContainerdConfigArgs {
            address: "/run/x.sock".into(),
            snapshotter: "lazy".into(),
            no_cri: false,
        };
        let text = config_snippet(&args);
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(
            parsed["proxy_plugins"]["lazy"]["address"].as_str(),
            Some("/run/x.sock")
        );
        assert_eq!(
            parsed["proxy_plugins"]["lazy"]["type"].as_str(),
            Some("snapshot")
        );
        let cri = &parsed["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
        assert_eq!(cri["snapshotter"].as_str(), Some("lazy"));
        assert_eq!(cri["disable_snapshot_annotations"].as_bool(), Some(false));
        let bare = config_snippet(&ContainerdConfigArgs {
            no_cri: true,
            ..args
        });
        assert!(!bare.contains("cri"));
    }
}
