//! The fixed-size footer at the end of every lazy layer blob.

use crate::FormatError;

/// First bytes of the footer.
pub const MAGIC: [u8; 8] = *b"LAZYFSLB";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Footer size in bytes.
pub const FOOTER_LEN: usize = 72;

/// Locates and checksums the metadata section. Little-endian on disk:
/// magic(8) version(4) reserved(4) meta_offset(8) meta_len(8) meta_size(8) meta_sha256(32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Offset of the compressed metadata; equals the length of the chunk data.
    pub meta_offset: u64,
    /// Length of the compressed metadata.
    pub meta_len: u64,
    /// Length of the metadata once decompressed.
    pub meta_size: u64,
    /// sha256 of the compressed metadata bytes.
    pub meta_sha256: [u8; 32],
}

impl Footer {
    /// Serializes the footer.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.meta_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.meta_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.meta_size.to_le_bytes());
        out[40..72].copy_from_slice(&self.meta_sha256);
        out
    }

    /// Parses a footer from exactly its bytes (the last [`FOOTER_LEN`] of a blob).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let bytes: &[u8; FOOTER_LEN] = bytes.try_into().map_err(|_| FormatError::Truncated {
            what: "footer",
            need: FOOTER_LEN as u64,
            have: bytes.len() as u64,
        })?;
        if bytes[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u32::from_le_bytes(field(bytes, 8));
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if u32::from_le_bytes(field(bytes, 12)) != 0 {
            return Err(FormatError::Layout("reserved footer field is not zero"));
        }
        Ok(Self {
            meta_offset: u64::from_le_bytes(field(bytes, 16)),
            meta_len: u64::from_le_bytes(field(bytes, 24)),
            meta_size: u64::from_le_bytes(field(bytes, 32)),
            meta_sha256: field(bytes, 40),
        })
    }

    /// Total blob length this footer describes.
    pub fn blob_len(&self) -> Option<u64> {
        self.meta_offset
            .checked_add(self.meta_len)?
            .checked_add(FOOTER_LEN as u64)
    }
}

fn field<const N: usize>(bytes: &[u8; FOOTER_LEN], at: usize) -> [u8; N] {
    bytes[at..at + N]
        .try_into()
        .expect("footer field within footer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let f = Footer {
            meta_offset: 10,
            meta_len: 20,
            meta_size: 30,
            meta_sha256: [9; 32],
        };
        let bytes = f.encode();
        assert_eq!(Footer::decode(&bytes).unwrap(), f);
        assert_eq!(f.blob_len(), Some(10 + 20 + 72));

        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(Footer::decode(&bad), Err(FormatError::BadMagic));
        let mut v2 = bytes;
        v2[8] = 2;
        assert_eq!(
            Footer::decode(&v2),
            Err(FormatError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
        assert!(matches!(
            Footer::decode(&bytes[1..]),
            Err(FormatError::Truncated { .. })
        ));
    }
}
