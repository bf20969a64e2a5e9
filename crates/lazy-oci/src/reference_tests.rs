use super::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn parse(s: &str) -> Reference {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parts(r: &Reference) -> (&str, &str, Option<&str>, Option<&str>) {
    (
        &r.registry,
        &r.repository,
        r.tag.as_deref(),
        r.digest.as_deref(),
    )
}

#[test]
fn docker_hub_normalization() {
    let cases = [
        (
            "busybox",
            ("docker.io", "library/busybox", Some("latest"), None),
        ),
        (
            "busybox:1.36",
            ("docker.io", "library/busybox", Some("1.36"), None),
        ),
        (
            "library/busybox",
            ("docker.io", "library/busybox", Some("latest"), None),
        ),
        (
            "rocker/r-base:4",
            ("docker.io", "rocker/r-base", Some("4"), None),
        ),
        (
            "docker.io/busybox",
            ("docker.io", "library/busybox", Some("latest"), None),
        ),
        (
            "index.docker.io/busybox",
            ("docker.io", "library/busybox", Some("latest"), None),
        ),
        ("a/b/c:t", ("docker.io", "a/b/c", Some("t"), None)),
    ];
    for (input, want) in cases {
        assert_eq!(parts(&parse(input)), want, "{input}");
    }
    assert_eq!(parse("busybox").api_host(), "registry-1.docker.io");
    assert_eq!(
        parse("busybox").to_string(),
        "docker.io/library/busybox:latest"
    );
}

#[test]
fn explicit_registries() {
    let with_digest = format!("registry.example.com/x@{D}");
    let tag_and_digest = format!("localhost:5000/a/b:v1@{D}");
    let cases = [
        (
            "localhost:5000/lib/busybox:1.0",
            ("localhost:5000", "lib/busybox", Some("1.0"), None),
        ),
        ("localhost/foo", ("localhost", "foo", Some("latest"), None)),
        (
            with_digest.as_str(),
            ("registry.example.com", "x", None, Some(D)),
        ),
        (
            tag_and_digest.as_str(),
            ("localhost:5000", "a/b", Some("v1"), Some(D)),
        ),
        (
            "127.0.0.1:5000/foo",
            ("127.0.0.1:5000", "foo", Some("latest"), None),
        ),
        (
            "[::1]:5000/foo:bar",
            ("[::1]:5000", "foo", Some("bar"), None),
        ),
        (
            "my-reg.example:443/a.b/c_d/e__f/g--h",
            (
                "my-reg.example:443",
                "a.b/c_d/e__f/g--h",
                Some("latest"),
                None,
            ),
        ),
        (
            "Registry.Example.COM/foo",
            ("Registry.Example.COM", "foo", Some("latest"), None),
        ),
    ];
    for (input, want) in cases {
        let r = parse(input);
        assert_eq!(parts(&r), want, "{input}");
        assert_eq!(r.api_host(), r.registry);
    }
}

#[test]
fn display_round_trips() {
    for input in [
        "localhost:5000/lib/busybox:1.0",
        "docker.io/library/busybox:latest",
        &format!("registry.example.com/x@{D}"),
        &format!("localhost:5000/a/b:v1@{D}"),
    ] {
        assert_eq!(parse(input).to_string(), input);
        assert_eq!(parse(&parse(input).to_string()), parse(input));
    }
}

#[test]
fn tag_and_digest_helpers() {
    let r = parse("localhost:5000/a:v1");
    assert_eq!(r.tag_or_digest(), "v1");
    let pinned = r.with_digest(D);
    assert_eq!(pinned.tag_or_digest(), D);
    assert_eq!(pinned.to_string(), format!("localhost:5000/a:v1@{D}"));
    let retagged = pinned.with_tag("v2");
    assert_eq!(retagged.tag_or_digest(), "v2");
    assert_eq!(retagged.digest, None);
    assert_eq!(r.name(), "localhost:5000/a");
}

#[test]
fn rejects_invalid() {
    let long_tag = format!("foo:{}", "a".repeat(129));
    let long_name = format!("reg.io/{}", "a".repeat(300));
    let cases = [
        ("", "empty reference"),
        ("Busybox", "lowercase"),
        ("localhost:5000/Foo", "lowercase"),
        ("foo:", "tag must be"),
        ("foo:-x", "tag must be"),
        ("foo:a/b", "registry host"),
        ("foo/bar:a/b", "path components"),
        ("foo/bar:a@b", "digest must be"),
        (long_tag.as_str(), "tag must be"),
        (long_name.as_str(), "longer than 255"),
        ("foo@sha256:abc", "digest must be"),
        ("foo@md5:abc", "digest must be"),
        ("foo//bar", "path components"),
        ("foo/", "path components"),
        ("-foo", "path components"),
        ("foo..bar", "path components"),
        ("foo___bar", "path components"),
        ("foo_-bar", "path components"),
        ("foo bar", "path components"),
        ("localhost:99999/foo", "registry host"),
        ("localhost:/foo", "registry host"),
        ("-bad.example/foo", "registry host"),
        ("bad..example/foo", "registry host"),
        ("[zz]:5000/foo", "registry host"),
        (":tag", "empty repository"),
    ];
    for (input, reason) in cases {
        match input.parse::<Reference>() {
            Ok(r) => panic!("{input:?} parsed as {r:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(reason), "{input:?}: {msg}");
                assert!(msg.contains("invalid image reference"), "{msg}");
            }
        }
    }
}

#[test]
fn tag_grammar() {
    assert!(is_valid_tag("latest"));
    assert!(is_valid_tag("_x.y-z"));
    assert!(is_valid_tag(&"a".repeat(128)));
    assert!(!is_valid_tag(""));
    assert!(!is_valid_tag(".x"));
    assert!(!is_valid_tag("a+b"));
}
