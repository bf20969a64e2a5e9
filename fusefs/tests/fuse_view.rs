//! The FUSE view through overlayfs equals the unpacked image; overlay
//! writes behave as on the unpacked image; reads are lazy.

mod common;

use common::{Lazyfsd, Overlay, Setup, lowerdirs, setup, umoci_unpack};
use lazy_testkit::images::BIG_FILE_LEN;
use lazy_testkit::require_privileges;
use lazy_testkit::tree::diff_trees;

#[test]
fn privileged_overlay_of_lazy_layers_equals_unpacked_image() {
    require_privileges!();
    overlay_equals_unpacked_image("");
}

#[test]
fn privileged_overlay_equals_unpacked_image_without_passthrough() {
    // No passthrough: OPEN is answered by ENOSYS and every file is opened
    // by the kernel alone; each read still reaches the right bytes.
    require_privileges!();
    overlay_equals_unpacked_image("passthrough = false");
}

fn overlay_equals_unpacked_image(config: &str) {
    let Setup {
        work,
        registry,
        image,
        src,
    } = setup();
    let host = registry.host();

    let daemon = Lazyfsd::start(&work.path().join("d"), &host, config);
    let layers = daemon.attach(&image);
    assert_eq!(layers.len(), 2);
    let overlay = Overlay::mount(&work.path().join("ov"), &lowerdirs(&layers));
    let reference = work.path().join("reference");
    umoci_unpack(&src, "v1", &reference);
    let diffs = diff_trees(&reference, &overlay.merged).unwrap();
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    let stats = daemon.stats();
    assert!(
        stats.fetched_bytes > BIG_FILE_LEN as u64,
        "the comparison read every file: {stats:?}"
    );
}

/// Applies the same changes to a directory tree (shell commands, as a user would).
fn mutate(root: &std::path::Path) {
    let script = r#"
        set -e
        echo appended >> etc/passwd
        echo new > etc/new-file
        rm data/dup-b.txt
        rm -r var/cache
        mv data/big.bin data/big-renamed.bin
        mv data/opaque data/opaque-moved
        mkdir -p data/opaque-moved/sub && echo deep > data/opaque-moved/sub/f
        ln -s ../etc/new-file data/link-to-new
        chmod 600 etc/motd
        touch -d @1600000000 etc/motd etc/passwd etc/new-file data/opaque-moved/sub/f
        touch -h -d @1600000000 data/link-to-new
    "#;
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn privileged_overlay_writes_behave_like_the_unpacked_image() {
    require_privileges!();
    let Setup {
        work,
        registry,
        image,
        src,
    } = setup();
    let host = registry.host();
    let daemon = Lazyfsd::start(&work.path().join("d"), &host, "");
    let overlay = Overlay::mount(&work.path().join("ov"), &lowerdirs(&daemon.attach(&image)));
    // The reference is native overlayfs over the unpacked image (copy-up
    // semantics, e.g. a renamed hardlink losing its link, are overlayfs's own).
    let unpacked = work.path().join("unpacked");
    umoci_unpack(&src, "v1", &unpacked);
    let native = Overlay::mount(&work.path().join("native"), &[unpacked]);
    let reference = native.merged.clone();
    mutate(&overlay.merged);
    mutate(&reference);
    // Directory mtimes move with the changes on both sides alike except
    // where the changes were made "now"; compare everything else exactly.
    let diffs: Vec<String> = diff_trees(&reference, &overlay.merged)
        .unwrap()
        .into_iter()
        .filter(|d| !is_dir_mtime_only(d))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(
        !overlay.merged.join("data/opaque-moved/lower").exists(),
        "opaque dir stays opaque after a move"
    );
}

/// A difference that is only in a directory's modification time (set to
/// "now" by the changes, on both sides, a moment apart).
fn is_dir_mtime_only(diff: &str) -> bool {
    let Some((_, rest)) = diff.split_once(": expected ") else {
        return false;
    };
    let Some((expected, got)) = rest.split_once(", got ") else {
        return false;
    };
    let strip = |s: &str| {
        let start = s.find("mtime: ").unwrap_or(0);
        let end = s[start..]
            .find("), content")
            .map_or(s.len(), |e| start + e + 1);
        format!("{}{}", &s[..start], &s[end..])
    };
    expected.contains("mode: 16") && strip(expected) == strip(got)
}
