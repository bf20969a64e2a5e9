//! State lazyfsd reads at start is untrusted: a damaged attached-layer list
//! or image record is set aside with a log line, and the daemon starts with
//! what is intact, every time (it used to panic on every start).

mod common;

use std::path::Path;

use common::{Lazyfsd, setup};
use lazy_control::{AttachOptions, PrefetchMode, PullPolicy};
use lazy_testkit::require_privileges;

#[test]
fn privileged_damaged_state_is_set_aside_and_the_daemon_starts_with_the_rest() {
    require_privileges!();
    let s = setup();
    let dir = s.work.path().join("d");
    let mut daemon = Lazyfsd::start(&dir, &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    daemon.kill9();

    // One entry names a repository that does not parse; one is not an entry.
    let list_path = dir.join("cache/attached.json");
    let mut list: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&list_path).unwrap()).unwrap();
    assert_eq!(list.len(), 2);
    list[1]["repository"] = "NOT A REFERENCE::".into();
    list.push(serde_json::json!({"digest": 42}));
    std::fs::write(&list_path, serde_json::to_vec(&list).unwrap()).unwrap();
    // The image record is garbage.
    let images = dir.join("cache/images");
    for record in std::fs::read_dir(&images).unwrap() {
        std::fs::write(record.unwrap().path(), b"{\"reference\": ").unwrap();
    }

    for start in 0..2 {
        daemon.spawn();
        let listed = daemon.client().list().unwrap();
        let digests: Vec<_> = listed.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(
            digests,
            [layers[0].digest.as_str()],
            "start {start}: the intact layer"
        );
        assert!(
            Path::new(&layers[0].path).join("etc/passwd").exists(),
            "start {start}: it still reads"
        );
        daemon.kill9();
    }
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("NOT A REFERENCE::"),
        "the bad entry is named: {log}"
    );
    assert!(log.contains("attached.json"), "the file is named: {log}");
    let damaged = std::fs::read_to_string(dir.join("cache/attached.json.damaged")).unwrap();
    assert!(damaged.contains("\"digest\":42"), "the original is kept");

    // The image record is set aside when used; the image attaches again
    // from the registry.
    daemon.spawn();
    let options = AttachOptions {
        pull: PullPolicy::Missing,
        prefetch: Some(PrefetchMode::None),
        ..AttachOptions::default()
    };
    let again = daemon.client().attach(&s.image, options).unwrap();
    assert_eq!(again.layers.len(), 2);
    let log = daemon.log();
    assert!(log.contains("set aside a damaged state file"), "{log}");
}
