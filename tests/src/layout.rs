//! Writes OCI image-layout directories from tar layers, the way `docker
//! build` + `skopeo copy oci:` would, so tests never need Docker Hub.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// How a test layer is compressed in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCompression {
    /// Plain tar.
    None,
    /// tar+gzip (the common case).
    Gzip,
    /// tar+zstd.
    Zstd,
}

impl TestCompression {
    fn media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn compress(self, tar: &[u8]) -> Result<Vec<u8>> {
        Ok(match self {
            Self::None => tar.to_vec(),
            Self::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar)?;
                gz.finish()?
            }
            Self::Zstd => zstd_compress(tar)?,
        })
    }
}

fn zstd_compress(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = std::process::Command::new("zstd")
        .args(["-q", "-c", "-3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running zstd (apt-get install zstd)")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer.join().expect("zstd writer thread")?;
    anyhow::ensure!(out.status.success(), "zstd failed");
    Ok(out.stdout)
}

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes a blob into `<dir>/blobs/sha256/` and returns its digest.
pub fn write_blob(dir: &Path, data: &[u8]) -> Result<String> {
    let digest = digest_of(data);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    fs::write(blobs.join(&digest["sha256:".len()..]), data)?;
    Ok(digest)
}

/// Writes an OCI layout at `dir` holding one linux/amd64 image tagged `tag`
/// with the given uncompressed tar layers, bottom first. Returns the
/// manifest digest.
pub fn write_oci_image(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    compression: TestCompression,
) -> Result<String> {
    let config = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "WorkingDir": "/",
    });
    write_oci_image_with_config(dir, tag, layers, compression, config)
}

/// [`write_oci_image`] with the image config's `config` object (Entrypoint,
/// Cmd, Env, WorkingDir, User) given.
pub fn write_oci_image_with_config(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    compression: TestCompression,
    process_config: serde_json::Value,
) -> Result<String> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let blob = compression.compress(tar)?;
        diff_ids.push(digest_of(tar));
        descriptors.push(json!({
            "mediaType": compression.media_type(),
            "digest": write_blob(dir, &blob)?,
            "size": blob.len(),
        }));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": process_config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": layers.iter().map(|_| json!({"created_by": "lazy-testkit"})).collect::<Vec<_>>(),
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(dir, &config)?,
            "size": config.len(),
        },
        "layers": descriptors,
    }))?;
    let manifest_digest = write_blob(dir, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
            "platform": { "architecture": "amd64", "os": "linux" },
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(manifest_digest)
}

/// Replaces layer `index` of the (single) image in the layout at `dir` with
/// `blob`. With `fix_digest`, the manifest and index are rewritten to name
/// the new blob (a well-formed image with odd content); without, the old
/// blob file is overwritten in place (content that fails its digest).
pub fn replace_layer_blob(dir: &Path, index: usize, blob: &[u8], fix_digest: bool) -> Result<()> {
    let index_path = dir.join("index.json");
    let mut image_index: serde_json::Value = serde_json::from_slice(&fs::read(&index_path)?)?;
    let manifest_digest = image_index["manifests"][0]["digest"]
        .as_str()
        .context("index entry")?
        .to_owned();
    let blob_path = |digest: &str| dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob_path(&manifest_digest))?)?;
    let layer = &mut manifest["layers"][index];
    if !fix_digest {
        let old = layer["digest"].as_str().context("layer digest")?.to_owned();
        fs::write(blob_path(&old), blob)?;
        return Ok(());
    }
    layer["digest"] = json!(write_blob(dir, blob)?);
    layer["size"] = json!(blob.len());
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    image_index["manifests"][0]["digest"] = json!(write_blob(dir, &manifest_bytes)?);
    image_index["manifests"][0]["size"] = json!(manifest_bytes.len());
    fs::write(index_path, serde_json::to_vec(&image_index)?)?;
    Ok(())
}

/// Overwrites the manifest blob of the layout's image so that it no longer
/// matches the digest the index names.
pub fn corrupt_manifest(dir: &Path) -> Result<()> {
    let image_index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json"))?)?;
    let digest = image_index["manifests"][0]["digest"]
        .as_str()
        .context("index entry")?;
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let mut bytes = fs::read(&path)?;
    let pos = bytes
        .iter()
        .position(|b| *b == b'2')
        .context("schemaVersion digit")?;
    bytes.insert(pos, b' ');
    fs::write(path, bytes).map_err(Into::into)
}

/// The tags in a layout's `index.json`.
pub fn layout_tags(dir: &Path) -> Result<Vec<String>> {
    let image_index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json"))?)?;
    Ok(image_index["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|d| {
                    d["annotations"]["org.opencontainers.image.ref.name"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default())
}
