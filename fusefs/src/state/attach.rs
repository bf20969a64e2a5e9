//! Attaching images and layers: from the registry (manifest, config and
//! layer metadata fetched concurrently), or as attached before. A layer is
//! installed under the attach-list lock, slot choice to save: two attaches
//! at once never share a slot, and a layer attached already is shared.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::join_all;
use lazy_control::protocol::{AttachedImage, LayerInfo, PullPolicy, RegistryCredentials};
use lazy_control::{ControlError, ErrorKind, PrefetchMode};
use lazy_format::LAYER_MEDIA_TYPE;
use lazy_image::{
    decode_layer_tail, fetch_layer_tail, fetch_lazy_manifest, fetch_prefetch_record, prefetch_tag,
};
use lazy_oci::spec::Descriptor;
use lazy_oci::{Reference, RegistryClient};

use super::attached::AttachRecord;
use super::images::ImageRecord;
use super::{DaemonState, OpResult, SizedMeta};
use crate::control::errors::{image_error, invalid_reference, oci_error};
use crate::fuse::layer::AttachedLayer;
use crate::prefetch::{prefetch_all, prefetch_record};

/// Image configs are small; a bigger one is refused, not buffered.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// One layer to attach for an image.
struct LayerRequest<'a> {
    digest: &'a str,
    image: &'a str,
    /// The repository its chunks are read from.
    repository: &'a str,
    pin: bool,
    client: &'a RegistryClient,
}

impl DaemonState {
    /// Attaches every layer of `image`; returns them bottom first, with the
    /// image config. With `pull` other than always, an image attached
    /// before is used as it was, without the registry. The metadata of
    /// new layers and the config are fetched concurrently: on a WAN each
    /// sequential request would add a round trip to every container start.
    #[tracing::instrument(name = "attach", skip_all, fields(%image))]
    pub async fn attach(
        self: &Arc<Self>,
        image: &str,
        pin: bool,
        prefetch: Option<PrefetchMode>,
        pull: PullPolicy,
        credentials: Option<&RegistryCredentials>,
    ) -> OpResult<AttachedImage> {
        if pull != PullPolicy::Always {
            let name = image.to_owned();
            if let Some(local) = self
                .blocking(move |state| state.attach_local(&name, pin))
                .await?
            {
                return Ok(local);
            }
            if pull == PullPolicy::Never {
                return Err(ControlError::new(
                    ErrorKind::NotFound,
                    format!("{image} was never attached on this host (pull policy: never)"),
                ));
            }
        }
        let reference: Reference = image.parse().map_err(|e| invalid_reference(image, e))?;
        let client = self.client_for(&reference, credentials);
        let store = self.stores.image_store(&reference, &client);
        let fail = |e| image_error(e).context(format_args!("attaching {image}"));
        let manifest = fetch_lazy_manifest(&store, image).await.map_err(fail)?;
        let layers: Vec<Descriptor> = manifest.manifest.layers().clone();

        // Cached metadata is read from disk and decoded off the workers.
        let wanted = layers.clone();
        let mut metas = self
            .blocking(move |state| state.cached_metas(&wanted))
            .await?;
        let missing: Vec<&Descriptor> = layers
            .iter()
            .filter(|d| !metas.contains_key(d.digest().as_ref()))
            .filter(|d| self.table.by_digest(d.digest().as_ref()).is_none())
            .collect();
        let config_desc = manifest.manifest.config();
        let config = store.fetch_blob(config_desc.digest().as_ref(), MAX_CONFIG_BYTES);
        let tails = join_all(
            missing
                .iter()
                .map(|desc| fetch_layer_tail(&store, desc, image)),
        );
        let (config, tails) = tokio::join!(config, tails);
        let config = config
            .map_err(|e| oci_error(&e).context(format_args!("attaching {image}: image config")))?;
        let config = String::from_utf8(config).map_err(|_| {
            ControlError::new(
                ErrorKind::Corrupt,
                format!("attaching {image}: the image config is not UTF-8"),
            )
        })?;
        let mut fetched = Vec::new();
        for (desc, tail) in missing.into_iter().zip(tails) {
            fetched.push(((*desc).clone(), tail.map_err(fail)?));
        }

        let (name, repository) = (image.to_owned(), reference.to_string());
        let install_client = client.clone();
        let order = layers.clone();
        let infos = self
            .blocking(move |state| -> OpResult<Vec<LayerInfo>> {
                for (desc, tail) in fetched {
                    let meta = decode_layer_tail(&tail, &desc, &name)
                        .map_err(|e| image_error(e).context(format_args!("attaching {name}")))?;
                    state
                        .meta_store
                        .put(desc.digest().as_ref(), desc.size(), &tail)
                        .map_err(Self::cache_failure("storing layer metadata"))?;
                    metas.insert(desc.digest().to_string(), (meta, desc.size()));
                }
                let mut infos = Vec::new();
                for desc in &order {
                    let digest = desc.digest().to_string();
                    let request = LayerRequest {
                        digest: &digest,
                        image: &name,
                        repository: &repository,
                        pin,
                        client: &install_client,
                    };
                    infos.push(state.attach_layer(&request, metas.remove(&digest))?);
                }
                Ok(infos)
            })
            .await?;
        let record = ImageRecord {
            reference: image.to_owned(),
            manifest_digest: manifest.digest.clone(),
            config: config.clone(),
            layers: infos.iter().map(|l| l.digest.clone()).collect(),
        };
        self.table.add_image(record.layers.clone());
        let remembered = self.blocking(move |state| state.images.put(&record)).await;
        if let Err(e) = remembered {
            tracing::warn!(%image, "remembering the image: {e}");
        }
        self.start_prefetch(
            image,
            &reference,
            &client,
            &manifest.digest,
            &layers,
            prefetch,
        );
        Ok(AttachedImage {
            manifest_digest: manifest.digest.clone(),
            config,
            layers: infos,
        })
    }

    /// Fetches ahead of readers in the background, as `prefetch` (or the
    /// daemon's default) asks.
    fn start_prefetch(
        &self,
        image: &str,
        reference: &Reference,
        client: &RegistryClient,
        manifest_digest: &str,
        layers: &[Descriptor],
        prefetch: Option<PrefetchMode>,
    ) {
        let mode = prefetch.unwrap_or(self.prefetch_default);
        if mode == PrefetchMode::None {
            return;
        }
        let layers: Vec<Arc<AttachedLayer>> = layers
            .iter()
            .filter_map(|d| self.table.by_digest(d.digest().as_ref()))
            .collect();
        let record_reference = reference.with_tag(&prefetch_tag(manifest_digest));
        let record_store = self.stores.image_store(&record_reference, client);
        let (cache, image) = (self.cache.clone(), image.to_owned());
        let running = Running::start(&self.prefetching);
        tokio::spawn(async move {
            let _running = running;
            match fetch_prefetch_record(&record_store, &image).await {
                Ok(Some(record)) => {
                    let n = prefetch_record(&cache, &layers, &record).await;
                    tracing::info!(%image, chunks = n, "prefetched the recorded startup set");
                }
                Ok(None) => tracing::debug!(%image, "no prefetch record"),
                Err(e) => tracing::warn!(%image, "prefetch record unusable: {e}"),
            }
            if mode == PrefetchMode::All {
                prefetch_all(&cache, &layers).await;
                tracing::info!(%image, "prefetched the whole image");
            }
        });
    }

    /// The cached metadata of those `layers` that are not attached yet.
    fn cached_metas(&self, layers: &[Descriptor]) -> OpResult<HashMap<String, SizedMeta>> {
        let mut metas = HashMap::new();
        for desc in layers {
            let digest = desc.digest().to_string();
            if self.table.by_digest(&digest).is_some() || metas.contains_key(&digest) {
                continue;
            }
            if let Some((meta, size, _)) = self
                .meta_store
                .get(&digest)
                .map_err(Self::cache_failure("reading cached layer metadata"))?
            {
                metas.insert(digest, (meta, size));
            }
        }
        Ok(metas)
    }

    /// Attaches one layer blob of the repository `image` names, by digest:
    /// its size from the registry, then its footer and metadata.
    #[tracing::instrument(name = "attach_layer", skip_all, fields(%image, %digest))]
    pub async fn attach_layer_blob(
        self: &Arc<Self>,
        image: &str,
        digest: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> OpResult<LayerInfo> {
        let reference: Reference = image.parse().map_err(|e| invalid_reference(image, e))?;
        let client = self.client_for(&reference, credentials);
        let context = format!("attaching layer {digest} of {image}");
        let attached = self.table.by_digest(digest).is_some();
        let cached = match attached {
            true => None,
            false => {
                let wanted = digest.to_owned();
                self.blocking(move |state| {
                    let cached = state.meta_store.get(&wanted);
                    cached.map_err(Self::cache_failure("reading cached layer metadata"))
                })
                .await?
                .map(|(meta, size, _)| (meta, size))
            }
        };
        let fetched = match attached || cached.is_some() {
            true => None,
            false => {
                let store = self.stores.image_store(&reference, &client);
                let size = store
                    .blob_size(digest)
                    .await
                    .map_err(|e| oci_error(&e).context(&context))?
                    .ok_or_else(|| {
                        ControlError::new(
                            ErrorKind::NotFound,
                            format!("{context}: no such blob in the repository"),
                        )
                    })?;
                let digest_value: lazy_oci::spec::Digest = digest.parse().map_err(|e| {
                    ControlError::new(ErrorKind::InvalidRequest, format!("{context}: {e}"))
                })?;
                let media_type = lazy_oci::spec::MediaType::Other(LAYER_MEDIA_TYPE.to_owned());
                let desc = Descriptor::new(media_type, size, digest_value);
                let tail = fetch_layer_tail(&store, &desc, image)
                    .await
                    .map_err(|e| image_error(e).context(&context))?;
                Some((desc, tail))
            }
        };
        let (name, digest, repository) =
            (image.to_owned(), digest.to_owned(), reference.to_string());
        self.blocking(move |state| {
            let mut meta = cached;
            if let Some((desc, tail)) = fetched {
                meta = Some((
                    decode_layer_tail(&tail, &desc, &name)
                        .map_err(|e| image_error(e).context(&context))?,
                    desc.size(),
                ));
                state
                    .meta_store
                    .put(&digest, desc.size(), &tail)
                    .map_err(Self::cache_failure("storing layer metadata"))?;
            }
            let request = LayerRequest {
                digest: &digest,
                image: &name,
                repository: &repository,
                pin: false,
                client: &client,
            };
            state.attach_layer(&request, meta)
        })
        .await
    }

    /// The registry client for `reference`: the daemon's, or one logging in
    /// with request credentials.
    fn client_for(
        &self,
        reference: &Reference,
        credentials: Option<&RegistryCredentials>,
    ) -> RegistryClient {
        match credentials {
            Some(c) => self
                .client
                .with_credentials(&reference.registry, &c.username, &c.password),
            None => self.client.clone(),
        }
    }

    /// Attaches an image as attached before, without the registry: its
    /// remembered config and layers, from cached metadata. `None` when it
    /// was not, or a layer's metadata is gone.
    fn attach_local(&self, image: &str, pin: bool) -> OpResult<Option<AttachedImage>> {
        let Some(record) = self.images.get(image) else {
            return Ok(None);
        };
        let Ok(repository) = image.parse::<Reference>().map(|r| r.to_string()) else {
            return Ok(None);
        };
        let mut infos = Vec::new();
        for digest in &record.layers {
            let mut meta = None;
            if self.table.by_digest(digest).is_none() {
                let cached = self
                    .meta_store
                    .get(digest)
                    .map_err(Self::cache_failure("reading cached layer metadata"))?;
                let Some((cached, size, _)) = cached else {
                    return Ok(None);
                };
                meta = Some((cached, size));
            }
            let request = LayerRequest {
                digest,
                image,
                repository: &repository,
                pin,
                client: &self.client,
            };
            infos.push(self.attach_layer(&request, meta)?);
        }
        self.table.add_image(record.layers.clone());
        tracing::debug!(%image, "attached as before, without the registry");
        Ok(Some(AttachedImage {
            manifest_digest: record.manifest_digest,
            config: record.config,
            layers: infos,
        }))
    }

    /// Attaches one layer for an image, all under the attach-list lock: a
    /// layer attached already is shared (the image is added to its record,
    /// and it is pinned if asked); otherwise it is installed in a fresh slot
    /// from `meta` (or the cached metadata, if it was detached meanwhile)
    /// and the list is saved.
    fn attach_layer(
        &self,
        request: &LayerRequest<'_>,
        meta: Option<SizedMeta>,
    ) -> OpResult<LayerInfo> {
        let mut list = self.attached.lock().expect("attach list lock");
        let saved = |list: &super::attached::AttachList| {
            list.save().map_err(|e| {
                ControlError::new(
                    ErrorKind::Internal,
                    format!("saving the attached-layer list: {e}"),
                )
            })
        };
        if let Some(record) = list.records.iter_mut().find(|r| r.digest == request.digest) {
            let mut changed = false;
            if !record.images.iter().any(|i| i == request.image) {
                record.images.push(request.image.to_owned());
                changed = true;
            }
            if request.pin && !record.pinned_by(request.image) {
                changed |= self.pin_record(record, request.image);
            }
            let record = record.clone();
            if changed {
                saved(&list)?;
            }
            return self
                .info_of(&record)
                .ok_or_else(|| vanished(request.digest));
        }
        let meta = match meta {
            Some(meta) => meta,
            None => match self
                .meta_store
                .get(request.digest)
                .map_err(Self::cache_failure("reading cached layer metadata"))?
            {
                Some((meta, size, _)) => (meta, size),
                None => return Err(vanished(request.digest)),
            },
        };
        let record = AttachRecord {
            digest: request.digest.to_owned(),
            slot: list.next_slot(),
            images: vec![request.image.to_owned()],
            repository: request.repository.to_owned(),
            pinned: request.pin,
            pinned_for: match request.pin {
                true => vec![request.image.to_owned()],
                false => Vec::new(),
            },
        };
        self.install(&record, meta, request.client)?;
        list.records.push(record.clone());
        saved(&list)?;
        self.info_of(&record)
            .ok_or_else(|| vanished(request.digest))
    }
}

fn vanished(digest: &str) -> ControlError {
    ControlError::new(
        ErrorKind::Busy,
        format!("layer {digest} was detached while attaching; try again"),
    )
}

/// One background prefetch counted in the stats while it runs.
struct Running(Arc<AtomicU64>);

impl Running {
    fn start(count: &Arc<AtomicU64>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
