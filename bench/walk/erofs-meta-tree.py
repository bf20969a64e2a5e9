#!/usr/bin/env python3
"""Builds the metadata tree of a composefs-style overlay (bench/walk-layers.sh).

    erofs-meta-tree.py NATIVE META DATA_ROOT LAYER...

Copies every entry of the unpacked tree NATIVE into META with its mode,
owner and times, but regular files stay empty (sparse, at their size) and
carry trusted.overlay.metacopy plus an absolute trusted.overlay.redirect to
the same path in the topmost of LAYER... (directory names under DATA_ROOT,
top first) that holds the file. mkfs.erofs then packs META into an image;
overlayfs mounted with lowerdir=IMAGE::DATA_ROOT (a data-only lower layer,
Linux >= 6.5) serves metadata from the image and looks a file up in lazyfsd
only when its data is read. Hardlinks become separate files (enough for
walks). Prints the number of regular files.
"""
import os
import stat
import sys

native, meta, data_root = sys.argv[1], sys.argv[2], sys.argv[3]
layers = sys.argv[4:]
files = 0
for root, dirs, names in os.walk(native):
    rel = os.path.relpath(root, native)
    for name in dirs + names:
        src = os.path.join(root, name)
        path = name if rel == "." else os.path.join(rel, name)
        dst = os.path.join(meta, path)
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(dst)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            layer = next(l for l in layers if os.path.lexists(os.path.join(data_root, l, path)))
            fd = os.open(dst, os.O_CREAT | os.O_WRONLY, 0o600)
            os.ftruncate(fd, st.st_size)
            os.close(fd)
            os.setxattr(dst, "trusted.overlay.metacopy", b"")
            os.setxattr(dst, "trusted.overlay.redirect", f"/{layer}/{path}".encode())
            files += 1
        else:
            os.mknod(dst, st.st_mode, st.st_rdev)
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
print(files)
