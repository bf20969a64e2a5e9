//! A minimal token server for `docker-registry`'s token authentication
//! (`auth: token:`), so the Bearer flow runs against the real registry.
//!
//! It issues RS256 JWTs whose `x5c` header carries a self-signed certificate
//! that the registry trusts through `rootcertbundle`; signing is done by the
//! `openssl` command line tool. A request with the right Basic credentials
//! gets the scope it asks for; one without credentials gets a token with no
//! access (as Docker Hub does for anonymous users); wrong credentials get 401.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

/// The `service` the registry and the issuer agree on.
pub const SERVICE: &str = "lazyfs-test-registry";
/// The `iss` claim the registry trusts.
pub const ISSUER: &str = "lazyfs-test-issuer";

/// A running token server; stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct TokenIssuer {
    port: u16,
    cert_pem: PathBuf,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Signer {
    key_pem: PathBuf,
    cert_der_b64: String,
    expected_basic: String,
}

impl TokenIssuer {
    /// Creates a key and certificate in `dir` and serves tokens on a free port.
    pub(crate) fn start(dir: &Path, user: &str, password: &str) -> anyhow::Result<Self> {
        crate::require_program("openssl", "openssl")?;
        let key_pem = dir.join("token-key.pem");
        let cert_pem = dir.join("token-cert.pem");
        let cert_der = dir.join("token-cert.der");
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=lazyfs-test-token-issuer", "-keyout"])
            .arg(&key_pem)
            .arg("-out")
            .arg(&cert_pem))?;
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_pem)
            .arg("-out")
            .arg(&cert_der))?;
        let signer = Signer {
            key_pem,
            cert_der_b64: base64(&std::fs::read(&cert_der)?, STANDARD, true),
            expected_basic: format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes(), STANDARD, true)
            ),
        };
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding token server")?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let _ = serve(stream, &signer);
                    }
                }
            })
        };
        Ok(Self {
            port,
            cert_pem,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// The token endpoint URL (the registry's `realm`).
    pub(crate) fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate the registry must trust.
    pub(crate) fn cert_pem(&self) -> &Path {
        &self.cert_pem
    }

    /// How many token requests were served.
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, signer: &Signer) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    };
    let (status, body) = match authorization {
        Some(given) if given != signer.expected_basic => (
            "401 Unauthorized",
            r#"{"details":"bad credentials"}"#.to_owned(),
        ),
        given => {
            let access = match (given, param("scope")) {
                (Some(_), Some(scope)) => access_claim(&scope),
                _ => serde_json::json!([]),
            };
            let token = signer.sign(access)?;
            (
                "200 OK",
                serde_json::json!({"token": token, "expires_in": 300}).to_string(),
            )
        }
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// `repository:a/b:pull,push` → `[{"type":"repository","name":"a/b","actions":["pull","push"]}]`.
fn access_claim(scope: &str) -> serde_json::Value {
    let parts: Vec<&str> = scope.splitn(3, ':').collect();
    match parts.as_slice() {
        [kind, name, actions] => serde_json::json!([{
            "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>(),
        }]),
        _ => serde_json::json!([]),
    }
}

impl Signer {
    fn sign(&self, access: serde_json::Value) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "lazyfs-test", "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_suffix()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            base64(header.to_string().as_bytes(), URL_SAFE, false),
            base64(claims.to_string().as_bytes(), URL_SAFE, false)
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-binary", "-sign"])
            .arg(&self.key_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("openssl stdin")?
            .write_all(signing_input.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "openssl dgst -sign failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(format!(
            "{signing_input}.{}",
            base64(&output.stdout, URL_SAFE, false)
        ))
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output()?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                let index = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(alphabet[index]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, std_padded, url_unpadded) in [
            ("", "", ""),
            ("f", "Zg==", "Zg"),
            ("fo", "Zm8=", "Zm8"),
            ("foo", "Zm9v", "Zm9v"),
            ("foob", "Zm9vYg==", "Zm9vYg"),
            ("\u{fb}\u{ff}", "w7vDvw==", "w7vDvw"),
        ] {
            assert_eq!(base64(input.as_bytes(), STANDARD, true), std_padded);
            assert_eq!(base64(input.as_bytes(), URL_SAFE, false), url_unpadded);
        }
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE, false), "-_8");
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"),
            "repository:a/b:pull,push"
        );
        assert_eq!(percent_decode("a+b%"), "a b%");
    }
}
