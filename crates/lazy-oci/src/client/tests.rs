//! Registry behaviours the real `docker-registry` never shows (ignored
//! ranges, 5xx, lying headers), played by a scripted HTTP/1.1 server.
//! Everything a real registry can do is tested against one in `tests/`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::digest::sha256_digest;

/// One scripted response: status line, extra headers, body.
struct Reply {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn reply(status: &'static str, body: &[u8]) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_vec(),
    }
}

/// Serves `script(request_number, request_line)` on a loopback port; returns
/// the host and the request counter.
fn serve(script: impl Fn(usize, &str) -> Reply + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let r = script(n, request_line.trim());
            let mut head = format!(
                "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                r.status,
                r.body.len()
            );
            for (name, value) in &r.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&r.body);
        }
    });
    (host, count)
}

fn client(host: &str, retries: u32) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        insecure_hosts: vec![host.to_owned()],
        retries,
        timeout: Duration::from_secs(5),
        docker_config: Some("/nonexistent/lazyfs-test/config.json".into()),
        ..ClientOptions::default()
    })
    .unwrap()
}

fn reference(host: &str) -> Reference {
    format!("{host}/repo:tag").parse().unwrap()
}

#[tokio::test]
async fn range_answered_with_whole_blob_is_an_error() {
    let (host, _) = serve(|_, _| reply("200 OK", &[7u8; 1000]));
    let digest = sha256_digest(&[7u8; 1000]);
    let err = client(&host, 0)
        .read_range(&reference(&host), &digest, 10..20)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OciError::RangeNotSupported { status: 200, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("range GETs are required"), "{err}");
}

#[tokio::test]
async fn short_range_is_an_error() {
    let (host, _) = serve(|_, _| reply("206 Partial Content", b"abc"));
    let err = client(&host, 0)
        .read_range(&reference(&host), &sha256_digest(b"x"), 0..10)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::SizeMismatch { .. }), "{err}");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let body = b"config bytes";
    let digest = sha256_digest(body);
    let (host, count) = serve(move |n, _| match n {
        0 | 1 => reply("503 Service Unavailable", b"busy"),
        _ => reply("200 OK", body),
    });
    let got = client(&host, 2)
        .fetch_blob(&reference(&host), &digest, 100)
        .await
        .unwrap();
    assert_eq!(got, body);
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let (host, count) = serve(|_, _| {
        reply(
            "500 Internal Server Error",
            br#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
        )
    });
    let err = client(&host, 1)
        .fetch_blob(&reference(&host), &digest, 100)
        .await
        .unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 500") && msg.contains("disk on fire") && msg.contains(&host),
        "{msg}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (host, count) = serve(|_, _| reply("400 Bad Request", b"no"));
    let err = client(&host, 3)
        .fetch_manifest(&reference(&host))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OciError::UnexpectedStatus { status: 400, .. }),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn manifest_checks_announced_digest_and_size_limit() {
    let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1},"layers":[]}"#;
    let (host, _) = serve(move |_, _| Reply {
        status: "200 OK",
        headers: vec![
            ("Content-Type", crate::OCI_MANIFEST.to_owned()),
            ("Docker-Content-Digest", sha256_digest(b"something else")),
        ],
        body: manifest.to_vec(),
    });
    let err = client(&host, 0)
        .fetch_manifest(&reference(&host))
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");

    let huge = vec![b' '; 5 * 1024 * 1024];
    let (host, _) = serve(move |_, _| reply("200 OK", &huge));
    let err = client(&host, 0)
        .fetch_manifest(&reference(&host))
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn unsupported_challenge_is_reported() {
    let (host, _) = serve(|_, _| Reply {
        status: "401 Unauthorized",
        headers: vec![("WWW-Authenticate", "Negotiate abc".to_owned())],
        body: Vec::new(),
    });
    let err = client(&host, 0).check_version(&host).await.unwrap_err();
    assert!(
        matches!(err, OciError::UnsupportedChallenge { .. }),
        "{err}"
    );
}

#[test]
fn debug_shows_no_secrets() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("user:s3cret-pw");
    let config = format!(r#"{{"auths":{{"reg.example":{{"auth":"{auth}"}}}}}}"#);
    std::fs::write(&path, config).unwrap();
    let c = RegistryClient::new(ClientOptions {
        docker_config: Some(path),
        ..ClientOptions::default()
    })
    .unwrap();
    let debug = format!("{c:?}");
    assert!(debug.contains("RegistryClient"), "{debug}");
    assert!(
        !debug.contains("s3cret") && !debug.contains(&auth),
        "{debug}"
    );
}
