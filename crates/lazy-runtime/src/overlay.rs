//! Overlay mounts with lazy layers as lower dirs.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// An overlay mount at `<dir>/merged` with upper and work dirs beside it;
/// unmounted on drop.
#[derive(Debug)]
pub struct OverlayMount {
    /// The merged view.
    pub merged: PathBuf,
}

impl OverlayMount {
    /// Mounts `lowers` (top layer first) under a fresh upper dir in `dir`.
    pub fn mount(dir: &Path, lowers: &[PathBuf]) -> std::io::Result<Self> {
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d)?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowerdir_option(lowers),
            escape(&upper),
            escape(&work)
        );
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| {
            std::io::Error::other(format!("mounting overlay at {}: {e}", merged.display()))
        })?;
        Ok(Self { merged })
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
    }
}

/// The `lowerdir=` value for `lowers` (top first). Layer directories are
/// named `sha256:<hex>`: overlayfs needs `:` (and `\`) escaped.
pub fn lowerdir_option(lowers: &[PathBuf]) -> String {
    lowers
        .iter()
        .map(|p| escape(p))
        .collect::<Vec<_>>()
        .join(":")
}

fn escape(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_colons() {
        let lowers = [PathBuf::from("/m/sha256:bb"), PathBuf::from("/m/sha256:aa")];
        assert_eq!(lowerdir_option(&lowers), "/m/sha256\\:bb:/m/sha256\\:aa");
    }
}
