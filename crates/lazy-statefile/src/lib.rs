//! Files that must survive a crash.
//!
//! [`write_atomic`] replaces a file so that after a crash (even a power cut,
//! with [`Durability::Synced`]) the file holds either its old or its new
//! content, never a mix: the bytes go to a temp file beside it (a unique
//! name, so concurrent writers never share one), are flushed, and the temp
//! file is renamed over the target; then the directory is flushed so the
//! rename itself is on disk. [`set_aside`] moves a damaged file out of the
//! way, keeping it for a person to look at, so a program can start with
//! what is intact instead of failing on every start.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How hard [`write_atomic`] works to survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file before the rename and the directory after it: the
    /// new content survives a power cut once this returns. For state.
    Synced,
    /// Rename only: survives a killed process (the kernel has the data) but
    /// not a power cut. For content that is verified when read back or
    /// can be fetched again, where an fsync per write costs too much.
    ProcessCrash,
}

/// Suffix of temp files; a reader of the directory skips (or removes) them.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes`, atomically (see the crate docs).
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    let temp = temp_path(path);
    let result = write_temp(&temp, bytes, durability)
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| match durability {
            Durability::Synced => sync_dir(path),
            Durability::ProcessCrash => Ok(()),
        });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_temp(temp: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    file.write_all(bytes)?;
    if durability == Durability::Synced {
        file.sync_all()?;
    }
    Ok(())
}

/// A temp name beside `path`, unique within this host: pid and a counter.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}{TEMP_SUFFIX}", std::process::id()));
    path.with_file_name(name)
}

/// Flushes the directory holding `path`, so a rename or create in it is durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Moves a damaged file aside to `<path>.damaged-<unix seconds>` (or a
/// fresh name if that exists) with a warning naming both and `why`.
/// Returns where it went; `None` (also logged) if it could not be moved.
pub fn set_aside(path: &Path, why: &dyn std::fmt::Display) -> Option<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = PathBuf::from(format!("{}.damaged-{secs}", path.display()));
    let mut n = 0;
    while aside.exists() {
        n += 1;
        aside = PathBuf::from(format!("{}.damaged-{secs}-{n}", path.display()));
    }
    match fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(
                file = %path.display(),
                kept_as = %aside.display(),
                "set aside a damaged state file: {why}"
            );
            Some(aside)
        }
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                "damaged state file ({why}) could not be set aside: {e}"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for durability in [Durability::Synced, Durability::ProcessCrash] {
            write_atomic(&path, b"one", durability).unwrap();
            write_atomic(&path, b"two!", durability).unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"two!");
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temp file is left");
    }

    #[test]
    fn concurrent_writers_never_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(path, &[t; 4096], Durability::ProcessCrash).unwrap();
                    }
                });
            }
        });
        let content = fs::read(&path).unwrap();
        assert_eq!(content.len(), 4096);
        assert!(
            content.iter().all(|b| *b == content[0]),
            "one writer's bytes, whole"
        );
    }

    #[test]
    fn failed_write_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&path, b"old", Durability::Synced).unwrap();
        // The target is a non-empty directory: the rename fails.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"new", Durability::Synced).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let temps = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(TEMP_SUFFIX)
            })
            .count();
        assert_eq!(temps, 0, "the temp file is removed");
    }

    #[test]
    fn set_aside_keeps_the_bytes_under_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attached.json");
        fs::write(&path, b"{garbage").unwrap();
        let first = set_aside(&path, &"test").unwrap();
        assert!(!path.exists());
        assert_eq!(fs::read(&first).unwrap(), b"{garbage");
        fs::write(&path, b"again").unwrap();
        let second = set_aside(&path, &"test").unwrap();
        assert_ne!(first, second, "an earlier damaged copy is not overwritten");
        assert!(set_aside(&path, &"gone").is_none());
    }
}
