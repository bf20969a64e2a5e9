//! A blob body read as a stream and verified at its end.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use crate::digest::DigestHasher;

/// An [`AsyncRead`] over a blob that checks its size and sha256.
///
/// Bytes are handed out as they arrive (they are not yet verified); reading
/// past the announced size, or reaching the end with a wrong size or digest,
/// fails with an [`io::ErrorKind::InvalidData`] error naming the digest. A
/// reader that saw `Ok(0)` has therefore read verified content.
pub struct BlobStream {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    hasher: DigestHasher,
    digest: String,
    expected_size: u64,
    received: u64,
    state: State,
}

enum State {
    Reading,
    Verified,
    Failed(String),
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", &self.digest)
            .field("expected_size", &self.expected_size)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// Wraps `reader`, which must yield exactly `size` bytes hashing to `digest`.
    pub fn new(reader: impl AsyncRead + Send + 'static, digest: &str, size: u64) -> Self {
        Self {
            inner: Box::pin(reader),
            hasher: DigestHasher::default(),
            digest: digest.to_owned(),
            expected_size: size,
            received: 0,
            state: State::Reading,
        }
    }

    /// The digest the content is checked against.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The size the content must have.
    pub fn size(&self) -> u64 {
        self.expected_size
    }

    fn fail(&mut self, message: String) -> io::Error {
        self.state = State::Failed(message.clone());
        io::Error::new(io::ErrorKind::InvalidData, message)
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.received != self.expected_size {
            let message = format!(
                "blob {}: size mismatch: expected {} bytes, got {}",
                self.digest, self.expected_size, self.received
            );
            return Err(self.fail(message));
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.digest {
            let message = format!(
                "blob {}: digest mismatch: content hashes to {actual}",
                self.digest
            );
            return Err(self.fail(message));
        }
        self.state = State::Verified;
        Ok(())
    }
}

impl AsyncRead for BlobStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &this.state {
            State::Verified => return Poll::Ready(Ok(())),
            State::Failed(message) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    message.clone(),
                )));
            }
            State::Reading => {}
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(this.inner.as_mut().poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            return Poll::Ready(this.finish());
        }
        let new_len = new.len();
        this.received = this
            .received
            .saturating_add(u64::try_from(new_len).unwrap_or(u64::MAX));
        if this.received > this.expected_size {
            let message = format!(
                "blob {}: size mismatch: more than the expected {} bytes",
                this.digest, this.expected_size
            );
            buf.set_filled(before);
            return Poll::Ready(Err(this.fail(message)));
        }
        this.hasher.update(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::digest::sha256_digest;

    async fn read_all(data: &'static [u8], digest: &str, size: u64) -> io::Result<Vec<u8>> {
        let mut stream = BlobStream::new(data, digest, size);
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn passes_verified_content() {
        let data = b"hello blob";
        let out = read_all(data, &sha256_digest(data), 10).await.unwrap();
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn rejects_wrong_digest_at_eof() {
        let digest = sha256_digest(b"other data");
        let err = read_all(b"hello blob", &digest, 10).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&digest), "{err}");
        assert!(err.to_string().contains("digest mismatch"), "{err}");
    }

    #[tokio::test]
    async fn rejects_short_and_long_content() {
        let data = b"hello blob";
        let digest = sha256_digest(data);
        let short = read_all(data, &digest, 11).await.unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::InvalidData);
        assert!(
            short.to_string().contains("expected 11 bytes, got 10"),
            "{short}"
        );
        let long = read_all(data, &digest, 4).await.unwrap_err();
        assert!(
            long.to_string().contains("more than the expected 4"),
            "{long}"
        );
    }

    #[tokio::test]
    async fn failure_is_sticky() {
        let mut stream = BlobStream::new(&b"abc"[..], &sha256_digest(b"xyz"), 3);
        let mut out = Vec::new();
        assert!(stream.read_to_end(&mut out).await.is_err());
        let again = stream.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::InvalidData);
    }
}
