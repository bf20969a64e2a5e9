//! Pinning images (their chunks are never evicted) and what each attached
//! image holds in the cache. A layer shared by images stays pinned while
//! one of them pins it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use lazy_control::protocol::ImageUsage;
use lazy_control::size::human;
use lazy_control::{ControlError, ErrorKind};
use lazy_format::ChunkDigest;

use super::attached::{AttachList, AttachRecord};
use super::{DaemonState, OpResult, chunk_digests};
use crate::fuse::layer::AttachedLayer;
use crate::prefetch::prefetch_all;

impl DaemonState {
    /// Every attached image with its size, cached bytes and pin.
    pub fn image_usage(&self) -> Vec<ImageUsage> {
        let list = self.attached.lock().expect("attach list lock");
        let mut images: BTreeMap<&str, Vec<&AttachRecord>> = BTreeMap::new();
        for record in &list.records {
            for image in &record.images {
                images.entry(image).or_default().push(record);
            }
        }
        images
            .into_iter()
            .map(|(image, records)| self.usage_of(image, &records))
            .collect()
    }

    fn usage_of(&self, image: &str, records: &[&AttachRecord]) -> ImageUsage {
        let chunks = self.distinct_chunks(records.iter().copied());
        let bytes = chunks.iter().map(|&(_, size)| size).sum();
        let cached_bytes = chunks
            .iter()
            .filter(|(digest, _)| self.cache.contains(digest))
            .map(|&(_, size)| size)
            .sum();
        ImageUsage {
            image: image.to_owned(),
            layers: records.len() as u64,
            chunks: chunks.len() as u64,
            bytes,
            cached_bytes,
            pinned: !records.is_empty() && records.iter().all(|r| r.pinned_by(image)),
        }
    }

    /// Pins or unpins every layer of attached `image`; with `fetch`, then
    /// fetches every chunk not cached and fails unless all are cached.
    pub async fn pin_image(
        self: &Arc<Self>,
        image: &str,
        pinned: bool,
        fetch: bool,
    ) -> OpResult<ImageUsage> {
        let name = image.to_owned();
        let layers = self
            .blocking(move |state| {
                if pinned {
                    state.check_pin_fits(&name)?;
                }
                state.set_pinned(&name, pinned)
            })
            .await?;
        if pinned && fetch {
            prefetch_all(&self.cache, &layers).await;
            self.cache.settled().await;
        }
        let name = image.to_owned();
        let usage = self
            .blocking(move |state| state.image_usage().into_iter().find(|u| u.image == name))
            .await
            .ok_or_else(|| not_attached(image))?;
        if pinned && fetch && usage.cached_bytes < usage.bytes {
            return Err(ControlError::new(
                ErrorKind::Unreachable,
                format!(
                    "pinned {image}, but {} of its {} bytes could not be fetched or kept \
                     (see lazyfsd's log; the quota is {})",
                    usage.bytes - usage.cached_bytes,
                    usage.bytes,
                    self.cache.config().quota_bytes
                ),
            ));
        }
        Ok(usage)
    }

    /// Refuses to pin `image` when it and the images pinned already could
    /// not all stay in the cache: better than fetching it all to find out.
    fn check_pin_fits(&self, image: &str) -> OpResult<()> {
        let list = self.attached.lock().expect("attach list lock");
        let pinned_after = list
            .records
            .iter()
            .filter(|r| r.pinned || r.images.iter().any(|i| i == image));
        let bytes: u64 = self
            .distinct_chunks(pinned_after)
            .iter()
            .map(|&(_, size)| size)
            .sum();
        let quota = self.cache.config().quota_bytes;
        if bytes <= quota {
            return Ok(());
        }
        Err(ControlError::new(
            ErrorKind::InvalidRequest,
            format!(
                "{image} cannot be pinned: with the images pinned now the cache would have to \
                 keep {}, more than its quota of {} (unpin an image, or raise `quota` in \
                 lazyfsd's config)",
                human(bytes),
                human(quota)
            ),
        ))
    }

    /// Each chunk of the attached layers of `records` once, with its size.
    fn distinct_chunks<'a>(
        &self,
        records: impl Iterator<Item = &'a AttachRecord>,
    ) -> Vec<(ChunkDigest, u64)> {
        let mut seen = HashSet::new();
        let mut chunks = Vec::new();
        for layer in records.filter_map(|r| self.table.by_digest(&r.digest)) {
            for chunk in &layer.meta.chunks {
                if seen.insert(chunk.digest) {
                    chunks.push((chunk.digest, u64::from(chunk.size)));
                }
            }
        }
        chunks
    }

    /// Sets the pin of `image` on its layers and saves the list; returns the layers.
    fn set_pinned(&self, image: &str, pinned: bool) -> OpResult<Vec<Arc<AttachedLayer>>> {
        let mut list = self.attached.lock().expect("attach list lock");
        let mut layers = Vec::new();
        for record in list
            .records
            .iter_mut()
            .filter(|r| r.images.iter().any(|i| i == image))
        {
            match pinned {
                true => {
                    self.pin_record(record, image);
                }
                false => self.unpin_record(record, image),
            }
            layers.extend(self.table.by_digest(&record.digest));
        }
        if layers.is_empty() {
            return Err(not_attached(image));
        }
        save(&list)?;
        Ok(layers)
    }

    /// Adds `image`'s pin to a layer; pins its chunks if it was not
    /// pinned. Returns whether the record changed.
    pub(super) fn pin_record(&self, record: &mut AttachRecord, image: &str) -> bool {
        if record.pinned_by(image) {
            return false;
        }
        if record.pinned && record.pinned_for.is_empty() {
            // Pinned before images were told apart: by all of them.
            record.pinned_for = record.images.clone();
        }
        record.pinned_for.push(image.to_owned());
        if !record.pinned
            && let Some(layer) = self.table.by_digest(&record.digest)
        {
            self.cache.pin(chunk_digests(&layer.meta));
            record.pinned = true;
        }
        true
    }

    /// Removes `image`'s pin from a layer; unpins its chunks when no
    /// image pins it any more.
    pub(super) fn unpin_record(&self, record: &mut AttachRecord, image: &str) {
        if record.pinned && record.pinned_for.is_empty() {
            record.pinned_for = record.images.clone();
        }
        record.pinned_for.retain(|i| i != image);
        if record.pinned && record.pinned_for.is_empty() {
            if let Some(layer) = self.table.by_digest(&record.digest) {
                self.cache.unpin(chunk_digests(&layer.meta));
            }
            record.pinned = false;
        }
    }
}

fn save(list: &AttachList) -> OpResult<()> {
    list.save().map_err(|e| {
        ControlError::new(
            ErrorKind::Internal,
            format!("saving the attached-layer list: {e}"),
        )
    })
}

fn not_attached(image: &str) -> ControlError {
    ControlError::new(
        ErrorKind::NotFound,
        format!("{image} is not attached (lazyctl attach {image})"),
    )
}
