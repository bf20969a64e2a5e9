//! Layer input: sniffs the compression of a layer stream and decodes it.

use std::io::{self, BufRead, BufReader, Read};

/// Compression of an OCI layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// Plain tar.
    None,
    /// tar+gzip.
    Gzip,
    /// tar+zstd.
    Zstd,
}

/// Wraps `input` in the decoder its first bytes call for. Sniffing rather
/// than trusting the media type copes with registries that mislabel layers.
pub fn decompress<'a, R: Read + 'a>(
    input: R,
) -> io::Result<(LayerCompression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        (
            LayerCompression::Gzip,
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        )
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (
            LayerCompression::Zstd,
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        )
    } else {
        (LayerCompression::None, Box::new(buffered))
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sniffs_all_three() {
        let plain = b"hello world".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        for (bytes, kind) in [
            (plain.clone(), LayerCompression::None),
            (gz, LayerCompression::Gzip),
            (zst, LayerCompression::Zstd),
        ] {
            let (found, mut reader) = decompress(&bytes[..]).unwrap();
            assert_eq!(found, kind);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain);
        }
    }
}
