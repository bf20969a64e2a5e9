//! Resolving a container path under the rootfs without leaving it.
//!
//! Image content is untrusted: `/etc/passwd` or a mount destination may be a
//! symlink to `/../../host/etc`. Symlinks are followed as if the rootfs were
//! `/` (like `chroot`), so the result always stays under the rootfs.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// Joins `path` (a container path) onto `root`, resolving `..` and symlinks
/// inside `root`. Components that do not exist are kept as they are.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(path).collect();
    let mut resolved = PathBuf::new();
    let mut followed = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&name);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for (i, part) in components(&target).enumerate() {
                    pending.insert(i, part);
                }
            }
            Ok(_) => resolved.push(&name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(&name),
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(resolved))
}

/// The normal and `..` components of `path`, as owned names.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_and_dotdot_stay_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/../../../etc", root.join("abs")).unwrap();
        symlink("../../..", root.join("etc/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        assert_eq!(
            secure_join(root, Path::new("/abs/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("/etc/up/x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            secure_join(root, Path::new("../../x/./y")).unwrap(),
            root.join("x/y")
        );
        assert_eq!(
            secure_join(root, Path::new("/")).unwrap(),
            root.to_path_buf()
        );
        let err = secure_join(root, Path::new("/loop")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }
}
