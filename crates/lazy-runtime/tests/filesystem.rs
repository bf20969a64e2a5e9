//! Root filesystem and bind mounts: read-only and read-write.

mod common;

use common::{TestRootfs, run_captured};
use lazy_runtime::BindMount;

#[test]
fn privileged_read_only_rootfs_refuses_writes() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let script = "if touch /new-file 2>/dev/null; then echo root-writable; else echo root-ro; fi; \
                  touch /dev/shm/x && echo shm-writable; pwd";
    let mut spec = rootfs.spec("ro-root", script);
    spec.read_only_rootfs = true;
    spec.cwd = "/created/before/ro".into();
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "root-ro\nshm-writable\n/created/before/ro\n");
    assert!(!rootfs.path().join("new-file").exists());

    spec.read_only_rootfs = false;
    let out = run_captured(&rootfs, &spec);
    assert!(out.stdout.starts_with("root-writable\n"), "{out:?}");
    assert!(rootfs.path().join("new-file").exists());
}

#[test]
fn privileged_binds_are_read_only_or_write_through() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    let ro_dir = rootfs.scratch().join("ro");
    let rw_dir = rootfs.scratch().join("rw");
    let file = rootfs.scratch().join("single-file");
    std::fs::create_dir_all(&ro_dir).unwrap();
    std::fs::create_dir_all(&rw_dir).unwrap();
    std::fs::write(ro_dir.join("data"), "from host\n").unwrap();
    std::fs::write(&file, "file bind\n").unwrap();
    let script = "cat /mnt/ro/data; \
                  if touch /mnt/ro/x 2>/dev/null; then echo ro-writable; else echo ro-refused; fi; \
                  echo written > /deep/rw/out && echo rw-ok; cat /etc/bound";
    let mut spec = rootfs.spec("binds", script);
    spec.binds = vec![
        BindMount {
            source: ro_dir.clone(),
            destination: "/mnt/ro".into(),
            read_only: true,
        },
        BindMount {
            source: rw_dir.clone(),
            destination: "/deep/rw".into(),
            read_only: false,
        },
        BindMount {
            source: file,
            destination: "/etc/bound".into(),
            read_only: true,
        },
    ];
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "from host\nro-refused\nrw-ok\nfile bind\n");
    assert_eq!(
        std::fs::read_to_string(rw_dir.join("out")).unwrap(),
        "written\n"
    );
    assert!(!ro_dir.join("x").exists());
}

#[test]
fn privileged_bind_destination_symlink_cannot_escape_rootfs() {
    lazy_testkit::require_privileges!();
    let rootfs = TestRootfs::new();
    // The image points /mnt at a host directory; the bind must land inside
    // the rootfs, not on the host.
    let victim = rootfs.scratch().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, rootfs.path().join("mnt")).unwrap();
    let source = rootfs.scratch().join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("marker"), "m").unwrap();
    let mut spec = rootfs.spec(
        "bind-escape",
        "cat /mnt/marker 2>/dev/null || echo no-marker",
    );
    spec.binds = vec![BindMount {
        source,
        destination: "/mnt".into(),
        read_only: false,
    }];
    let out = run_captured(&rootfs, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    // /mnt is the symlink to a path that does not exist in the rootfs; the
    // bind went to that path inside the rootfs instead.
    let inside = rootfs.path().join(victim.strip_prefix("/").unwrap());
    assert!(inside.is_dir(), "bind target not created inside the rootfs");
    assert_eq!(out.stdout, "m");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "host dir touched"
    );
}
