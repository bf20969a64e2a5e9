//! Attaching images and layers: from the registry (manifest, config and
//! layer metadata fetched concurrently), or as attached before.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use lazy_convert::{
    ImageStore, fetch_lazy_manifest, fetch_prefetch_record, prefetch_tag, read_layer_meta,
};
use lazy_format::{LAYER_MEDIA_TYPE, LayerMeta};
use lazy_oci::{Reference, RegistryClient};

use crate::attached::AttachRecord;
use crate::images::ImageRecord;
use crate::layer::AttachedLayer;
use crate::prefetch::{PrefetchMode, prefetch_all, prefetch_record};
use crate::protocol::{AttachedImage, LayerInfo, PullPolicy, RegistryCredentials};
use crate::state::{DaemonState, OpResult};

/// Image configs are small; a bigger one is refused, not buffered.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

impl DaemonState {
    /// Attaches every layer of `image`; returns them bottom first, with the
    /// image config. With `pull` other than always, an image attached
    /// before is used as it was, without the registry. The metadata of
    /// new layers and the config are fetched concurrently: on a WAN each
    /// sequential request would add a round trip to every container start.
    pub async fn attach(
        &self,
        image: &str,
        pin: bool,
        prefetch: Option<PrefetchMode>,
        pull: PullPolicy,
        credentials: Option<&RegistryCredentials>,
    ) -> OpResult<AttachedImage> {
        if pull != PullPolicy::Always {
            if let Some(local) = self.attach_local(image, pin)? {
                return Ok(local);
            }
            if pull == PullPolicy::Never {
                return Err(format!(
                    "{image} was never attached on this host (pull policy: never)"
                ));
            }
        }
        let reference: Reference = image.parse().map_err(|e| format!("{e}"))?;
        let client = self.client_for(&reference, credentials);
        let store = ImageStore::Registry {
            client: client.clone(),
            reference: reference.clone(),
        };
        let manifest = fetch_lazy_manifest(&store, image)
            .await
            .map_err(|e| format!("attaching {image}: {e}"))?;
        let mut cached = HashMap::new();
        let mut missing = Vec::new();
        for desc in manifest.manifest.layers() {
            let digest = desc.digest().to_string();
            if self.table.by_digest(&digest).is_some() || cached.contains_key(&digest) {
                continue;
            }
            match self.meta_store.get(&digest).map_err(|e| e.to_string())? {
                Some((meta, _, _)) => {
                    cached.insert(digest, meta);
                }
                None => missing.push(desc),
            }
        }
        let config_desc = manifest.manifest.config();
        let config = async {
            store
                .fetch_blob(config_desc.digest().as_ref(), MAX_CONFIG_BYTES)
                .await
                .map_err(|e| format!("attaching {image}: image config: {e}"))
        };
        let metas = join_all(missing.iter().map(|desc| async {
            let (meta, tail) = read_layer_meta(&store, desc, image)
                .await
                .map_err(|e| format!("attaching {image}: {e}"))?;
            self.meta_store
                .put(desc.digest().as_ref(), desc.size(), &tail)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((desc.digest().to_string(), meta))
        }));
        let (config, metas) = tokio::join!(config, metas);
        let config = String::from_utf8(config?)
            .map_err(|_| format!("attaching {image}: the image config is not UTF-8"))?;
        for fetched in metas {
            let (digest, meta) = fetched?;
            cached.insert(digest, meta);
        }
        let mut infos = Vec::new();
        for desc in manifest.manifest.layers() {
            let digest = desc.digest().to_string();
            if let Some(meta) = cached.remove(&digest) {
                self.attach_layer(&digest, image, &reference.to_string(), pin, meta, &client)?;
            }
            infos.push(self.info(&digest).ok_or("layer vanished while attaching")?);
        }
        let record = ImageRecord {
            reference: image.to_owned(),
            manifest_digest: manifest.digest.clone(),
            config: config.clone(),
            layers: infos.iter().map(|l| l.digest.clone()).collect(),
        };
        if let Err(e) = self.images.put(&record) {
            tracing::warn!("remembering {image}: {e}");
        }
        let mode = prefetch.unwrap_or(self.prefetch_default);
        if mode != PrefetchMode::None {
            let layers: Vec<Arc<AttachedLayer>> = manifest
                .manifest
                .layers()
                .iter()
                .filter_map(|d| self.table.by_digest(d.digest().as_ref()))
                .collect();
            let record_store = ImageStore::Registry {
                client: client.clone(),
                reference: reference.with_tag(&prefetch_tag(&manifest.digest)),
            };
            let (cache, image) = (self.cache.clone(), image.to_owned());
            tokio::spawn(async move {
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
        Ok(AttachedImage {
            manifest_digest: manifest.digest.clone(),
            config,
            layers: infos,
        })
    }

    /// Attaches one layer blob of the repository `image` names, by digest:
    /// its size from the registry, then its footer and metadata.
    pub async fn attach_layer_blob(
        &self,
        image: &str,
        digest: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> OpResult<LayerInfo> {
        if let Some(info) = self.info(digest) {
            return Ok(info);
        }
        let reference: Reference = image.parse().map_err(|e| format!("{e}"))?;
        let client = self.client_for(&reference, credentials);
        let fail = |e: &dyn std::fmt::Display| format!("attaching layer {digest} of {image}: {e}");
        let meta = match self.meta_store.get(digest).map_err(|e| e.to_string())? {
            Some((meta, _, _)) => meta,
            None => {
                let size = client
                    .blob_exists(&reference, digest)
                    .await
                    .map_err(|e| fail(&e))?
                    .ok_or_else(|| fail(&"no such blob in the repository"))?;
                let digest_value: lazy_oci::spec::Digest = digest.parse().map_err(|e| fail(&e))?;
                let media_type = lazy_oci::spec::MediaType::Other(LAYER_MEDIA_TYPE.to_owned());
                let desc = lazy_oci::spec::Descriptor::new(media_type, size, digest_value);
                let store = ImageStore::Registry {
                    client: client.clone(),
                    reference: reference.clone(),
                };
                let (meta, tail) = read_layer_meta(&store, &desc, image)
                    .await
                    .map_err(|e| fail(&e))?;
                self.meta_store
                    .put(digest, size, &tail)
                    .map_err(|e| e.to_string())?;
                meta
            }
        };
        self.attach_layer(digest, image, &reference.to_string(), false, meta, &client)?;
        self.info(digest)
            .ok_or_else(|| "layer vanished while attaching".to_owned())
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
        let repository = match image.parse::<Reference>() {
            Ok(r) => r.to_string(),
            Err(_) => return Ok(None),
        };
        let mut infos = Vec::new();
        for digest in &record.layers {
            if self.table.by_digest(digest).is_none() {
                let Some((meta, _, _)) = self.meta_store.get(digest).map_err(|e| e.to_string())?
                else {
                    return Ok(None);
                };
                self.attach_layer(digest, image, &repository, pin, meta, &self.client)?;
            }
            infos.push(self.info(digest).ok_or("layer vanished while attaching")?);
        }
        tracing::debug!(%image, "attached as before, without the registry");
        Ok(Some(AttachedImage {
            manifest_digest: record.manifest_digest,
            config: record.config,
            layers: infos,
        }))
    }

    /// Installs one layer and persists it in the attached-layer list.
    fn attach_layer(
        &self,
        digest: &str,
        image: &str,
        repository: &str,
        pin: bool,
        meta: LayerMeta,
        client: &RegistryClient,
    ) -> OpResult<()> {
        let slot = self.attached.lock().expect("attach list lock").next_slot();
        let record = AttachRecord {
            digest: digest.to_owned(),
            slot,
            image: image.to_owned(),
            repository: repository.to_owned(),
            pinned: pin,
        };
        self.install(&record, meta, client);
        let mut list = self.attached.lock().expect("attach list lock");
        list.records.push(record);
        list.save()
            .map_err(|e| format!("saving the attached-layer list: {e}"))
    }
}
