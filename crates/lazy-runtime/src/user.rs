//! Resolving `-u user[:group]` against the rootfs's `/etc/passwd` and
//! `/etc/group`, like docker.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::RuntimeError;
use crate::securejoin::secure_join;
use crate::spec::User;

/// Larger account files are not read (they are untrusted image content).
const MAX_ACCOUNT_FILE: u64 = 16 << 20;

/// Resolves `user` — `name`, `uid`, `uid:gid`, `name:group`, … — to ids using
/// the rootfs's `/etc/passwd` and `/etc/group`. Symlinks are resolved inside
/// the rootfs, never out of it. Without those files only numeric ids work.
/// An empty `user` means root. A uid with no passwd entry gets gid 0, like
/// docker; supplementary groups are those listing the user by name.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<User, RuntimeError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = read_account_file(rootfs, "/etc/passwd")?;
    let group = read_account_file(rootfs, "/etc/group")?;
    let accounts: Vec<PasswdEntry> = passwd.as_deref().map(parse_passwd).unwrap_or_default();
    let groups: Vec<GroupEntry> = group.as_deref().map(parse_group).unwrap_or_default();

    let (uid, entry) = match user_part.parse::<u32>() {
        Ok(uid) => (uid, accounts.iter().find(|e| e.uid == uid)),
        Err(_) => {
            let found = accounts
                .iter()
                .find(|e| e.name == user_part)
                .ok_or_else(|| RuntimeError::UserNotFound {
                    name: user_part.to_string(),
                })?;
            (found.uid, Some(found))
        }
    };
    let gid = match group_part {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| RuntimeError::GroupNotFound {
                    name: g.to_string(),
                })?,
        },
        _ => entry.map_or(0, |e| e.gid),
    };
    let additional_gids = match entry {
        Some(e) => {
            let mut gids: Vec<u32> = groups
                .iter()
                .filter(|g| g.gid != gid && g.members.contains(&e.name))
                .map(|g| g.gid)
                .collect();
            gids.dedup();
            gids
        }
        None => Vec::new(),
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| PathBuf::from(e.home)),
    })
}

/// The file's content, or `None` when it does not exist in the rootfs.
fn read_account_file(rootfs: &Path, path: &str) -> Result<Option<String>, RuntimeError> {
    let err = |source| RuntimeError::RootfsFile {
        path: PathBuf::from(path),
        source,
    };
    let host_path = secure_join(rootfs, Path::new(path)).map_err(err)?;
    // O_NOFOLLOW: the path was resolved above; O_NONBLOCK: a FIFO planted by
    // the image must not hang us.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&host_path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    if !file.metadata().map_err(err)?.is_file() {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ACCOUNT_FILE)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// One line of `/etc/passwd`.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// One line of `/etc/group`.
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Parses passwd lines, skipping malformed ones (as libc does).
fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0],
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5],
            })
        })
        .collect()
}

/// Parses group lines, skipping malformed ones.
fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0],
                gid: f[2].parse().ok()?,
                members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nalice:x:1000:\nwheel:x:10:bob,alice\naudio:x:29:alice\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    #[test]
    fn names_and_numbers_resolve() {
        let dir = rootfs();
        let alice = resolve_user(dir.path(), "alice").unwrap();
        assert_eq!((alice.uid, alice.gid), (1000, 1000));
        assert_eq!(alice.additional_gids, [10, 29]);
        assert_eq!(alice.home.as_deref(), Some(Path::new("/home/alice")));

        let u = resolve_user(dir.path(), "1000:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        assert_eq!(u.additional_gids, [29]);

        let u = resolve_user(dir.path(), "4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home), (4242, 0, None));

        let root = resolve_user(dir.path(), "").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));

        assert!(matches!(
            resolve_user(dir.path(), "bob"),
            Err(RuntimeError::UserNotFound { .. })
        ));
        assert!(matches!(
            resolve_user(dir.path(), "alice:nogroup"),
            Err(RuntimeError::GroupNotFound { .. })
        ));
    }

    #[test]
    fn missing_files_allow_numeric_only() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve_user(dir.path(), "1000:1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert!(resolve_user(dir.path(), "alice").is_err());
    }

    #[test]
    fn symlinked_passwd_is_read_inside_the_rootfs() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/passwd"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        // An absolute link to the host file is resolved inside the rootfs,
        // where it does not exist.
        let outside = host.path().join("passwd");
        symlink(&outside, dir.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(dir.path(), "evil").is_err());
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        symlink("../../../real/passwd", dir.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_user(dir.path(), "evil").unwrap().uid, 7);
    }
}
