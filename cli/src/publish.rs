//! `lazyctl publish IMAGE DIR`: write a lazy image into an HTTP
//! content-addressed store directory, for any web server to serve.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use lazy_cas::{PieceTable, StoreWriter};
use lazy_format::FOOTER_LEN;
use lazy_image::{
    ImageStore, decode_layer_tail, fetch_layer_tail, fetch_lazy_manifest, prefetch_tag,
};
use lazy_oci::spec::Descriptor;
use lazy_oci::{ImageLocation, OciError, Reference};
use sha2::{Digest as _, Sha256};

use crate::progress::short;
use crate::registry_args::RegistryArgs;
use crate::size::human;

/// The largest piece: a chunk is far smaller; this cuts metadata tails.
const MAX_PIECE: u32 = 4 << 20;
/// Image configs and prefetch records are small.
const MAX_SMALL_BLOB: u64 = 64 << 20;

/// Publish a lazy image to an HTTP content-addressed store.
///
/// Writes the image into DIR as immutable files named by the sha256 of
/// their content (CernVM-FS style): the manifest, the config, the prefetch
/// record, and each layer blob cut at its chunk boundaries, so that every
/// chunk is one small file that a plain web server (nginx) serves and an
/// HTTP proxy (squid) caches whole. Chunks shared with images published
/// before are not written again. The tag file is written last, so the
/// store never names a half-published image. lazyfsd reads such a store
/// when it is configured under `[stores."NAME"]`; images are then
/// `NAME/REPOSITORY:TAG`.
#[derive(Debug, Args)]
#[command(after_help = "EXAMPLE:
  lazyctl publish localhost:5000/r-base:lazy /srv/lazyfs
  # serve /srv/lazyfs (see dist/nginx-lazyfs-store.conf), then in
  # /etc/lazyfs/config.toml:
  #   [stores.\"cas.example.org\"]
  #   urls = [\"http://cas.example.org/lazyfs\"]
  lazyrun cas.example.org/r-base:lazy")]
pub struct PublishArgs {
    /// Lazy image: `registry/repository:tag` or `oci:DIR:TAG`.
    pub image: String,
    /// The store directory (created if missing).
    pub dir: PathBuf,
    /// Name in the store, `REPOSITORY[:TAG]` (default: the image's
    /// repository and tag; required for `oci:` images).
    #[arg(long = "as", value_name = "REPOSITORY[:TAG]")]
    pub name: Option<String>,
    /// Registry options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What one publish wrote.
#[derive(Debug, Default)]
struct Written {
    objects: u64,
    bytes: u64,
    reused: u64,
}

/// Publishes the image.
pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let location: ImageLocation = args.image.parse()?;
    let (repository, tag) = store_name(&location, args.name.as_deref())?;
    let client = args.registry.client()?;
    let store = ImageStore::open(&location, &client)?;
    let writer = StoreWriter::open(&args.dir)
        .with_context(|| format!("opening the store {}", args.dir.display()))?;
    let manifest = fetch_lazy_manifest(&store, &args.image).await?;
    let mut written = Written::default();

    let config = manifest.manifest.config();
    let bytes = store
        .fetch_blob(config.digest().as_ref(), MAX_SMALL_BLOB)
        .await?;
    put(&writer, &bytes, &mut written)?;
    for desc in manifest.manifest.layers() {
        publish_layer(&store, &writer, desc, &args.image, &mut written).await?;
    }
    let records = publish_prefetch_record(&store, &manifest.digest, &writer, &mut written)
        .await
        .context("publishing the prefetch record")?;
    put(&writer, &manifest.bytes, &mut written)?;
    if let Some(record_digest) = records {
        writer.put_tag(&repository, &prefetch_tag(&manifest.digest), &record_digest)?;
    }
    writer.put_tag(&repository, &tag, &manifest.digest)?;
    println!(
        "published {} as {repository}:{tag} ({}) in {}: {} new objects, {}, {} already there",
        args.image,
        short(&manifest.digest),
        args.dir.display(),
        written.objects,
        human(written.bytes),
        written.reused,
    );
    Ok(())
}

/// The repository and tag in the store.
fn store_name(location: &ImageLocation, name: Option<&str>) -> anyhow::Result<(String, String)> {
    let reference = match (name, location) {
        (Some(name), _) => format!("store.invalid/{name}").parse::<Reference>()?,
        (None, ImageLocation::Registry(reference)) => reference.clone(),
        (None, ImageLocation::Layout { .. }) => {
            bail!("name the image in the store with --as REPOSITORY[:TAG]")
        }
    };
    if reference.digest.is_some() && reference.tag.is_none()
        || name.is_some_and(|n| n.contains('@'))
    {
        bail!("a store names images by tag: use --as REPOSITORY:TAG");
    }
    let tag = reference
        .tag
        .clone()
        .unwrap_or_else(|| reference.tag_or_digest());
    Ok((reference.repository, tag))
}

fn put(writer: &StoreWriter, bytes: &[u8], written: &mut Written) -> anyhow::Result<String> {
    let (digest, new) = writer.put_object(bytes).context("writing an object")?;
    match new {
        true => {
            written.objects += 1;
            written.bytes += bytes.len() as u64;
        }
        false => written.reused += 1,
    }
    Ok(digest)
}

/// Downloads one layer blob (checked), cuts it at its chunk boundaries and
/// stores the pieces, then the piece table. A layer published before is skipped.
async fn publish_layer(
    store: &ImageStore,
    writer: &StoreWriter,
    desc: &Descriptor,
    image: &str,
    written: &mut Written,
) -> anyhow::Result<()> {
    let digest = desc.digest().to_string();
    let table_path = writer.root().join(lazy_cas::layout::pieces_path(&digest)?);
    if table_path.exists() {
        written.reused += 1;
        return Ok(());
    }
    let tail = fetch_layer_tail(store, desc, image).await?;
    let meta = decode_layer_tail(&tail, desc, image)?;
    let tail_start = desc.size() - tail.len() as u64;
    let cuts: Vec<u64> = meta
        .chunks
        .iter()
        .flat_map(|c| [c.offset, c.end()])
        .chain([tail_start, desc.size().saturating_sub(FOOTER_LEN as u64)])
        .collect();

    let temp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let mut stream = store.open_blob(&digest, desc.size()).await?;
    let mut file = tokio::fs::File::create(temp.path()).await?;
    tokio::io::copy(&mut stream, &mut file)
        .await
        .with_context(|| format!("downloading layer {digest}"))?;
    drop(file);
    let (path, size, store_writer) = (temp.path().to_owned(), desc.size(), writer.clone());
    let (table, new) =
        tokio::task::spawn_blocking(move || cut_and_store(&path, &store_writer, size, &cuts))
            .await
            .context("publishing a layer")??;
    written.objects += new.0;
    written.bytes += new.1;
    written.reused += table.pieces().len() as u64 - new.0;
    writer.put_pieces(&digest, &table)?;
    eprintln!("layer {}: {} pieces", short(&digest), table.pieces().len());
    Ok(())
}

/// Cuts the blob in `path` and stores each piece; returns the table and
/// the count and bytes of new objects.
fn cut_and_store(
    path: &Path,
    writer: &StoreWriter,
    size: u64,
    cuts: &[u64],
) -> anyhow::Result<(PieceTable, (u64, u64))> {
    let mut file = File::open(path)?;
    let mut new = (0, 0);
    let mut read = |range: Range<u64>| -> std::io::Result<[u8; 32]> {
        let mut buf = vec![0; usize::try_from(range.end - range.start).expect("pieces are small")];
        file.seek(SeekFrom::Start(range.start))?;
        file.read_exact(&mut buf)?;
        let (_, created) = writer.put_object(&buf)?;
        if created {
            new.0 += 1;
            new.1 += buf.len() as u64;
        }
        Ok(Sha256::digest(&buf).into())
    };
    let table = PieceTable::cut(size, cuts.iter().copied(), MAX_PIECE, &mut read)?;
    Ok((table, new))
}

/// Copies the image's prefetch record (an artifact manifest and its
/// blobs), if it has one; returns the artifact manifest's digest.
async fn publish_prefetch_record(
    store: &ImageStore,
    manifest_digest: &str,
    writer: &StoreWriter,
    written: &mut Written,
) -> anyhow::Result<Option<String>> {
    let tag = prefetch_tag(manifest_digest);
    let record_store = match store {
        ImageStore::Registry { client, reference } => ImageStore::Registry {
            client: client.clone(),
            reference: reference.with_tag(&tag),
        },
        ImageStore::Layout { layout, .. } => ImageStore::Layout {
            layout: layout.clone(),
            tag,
        },
        ImageStore::Cas { client, reference } => ImageStore::Cas {
            client: client.clone(),
            reference: reference.with_tag(&tag),
        },
    };
    let artifact = match record_store.fetch_manifest().await {
        Ok(m) => m,
        Err(OciError::ManifestNotFound { .. } | OciError::LayoutTagNotFound { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let blobs = std::iter::once(artifact.manifest.config()).chain(artifact.manifest.layers());
    for desc in blobs {
        let bytes = record_store
            .fetch_blob(desc.digest().as_ref(), MAX_SMALL_BLOB)
            .await?;
        put(writer, &bytes, written)?;
    }
    Ok(Some(put(writer, &artifact.bytes, written)?))
}
