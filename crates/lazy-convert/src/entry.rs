//! Reads a tar header (with its PAX records) into a lazy layer entry.

use std::io::{self, Read};

use lazy_format::{DeviceKind, Entry, EntryKind, Xattr};
use tar::EntryType;

use crate::error::{ConvertError, lossy};
use crate::tar_path::normalize;

/// An entry read from a tar header; its path is filled in by the caller.
pub(crate) struct EntryHeader {
    pub entry: Entry,
    /// Whether the entry is a regular file whose content follows.
    pub content: bool,
}

/// A failure that still needs the entry's name.
pub(crate) struct HeaderError {
    layer: String,
    kind: HeaderErrorKind,
}

enum HeaderErrorKind {
    Io(io::Error),
    Unsupported(String),
    Unsafe(&'static str),
}

impl HeaderError {
    pub(crate) fn named(self, raw_name: &[u8]) -> ConvertError {
        let entry = lossy(raw_name);
        let layer = self.layer;
        match self.kind {
            HeaderErrorKind::Io(source) => ConvertError::Read {
                layer,
                source: io::Error::new(source.kind(), format!("entry {entry:?}: {source}")),
            },
            HeaderErrorKind::Unsupported(reason) => ConvertError::Unsupported {
                layer,
                entry,
                reason,
            },
            HeaderErrorKind::Unsafe(reason) => ConvertError::UnsafeEntry {
                layer,
                entry,
                reason: reason.into(),
            },
        }
    }
}

/// Reads the header of `item`; `None` for records that carry no entry.
pub(crate) fn read_header<R: Read>(
    item: &mut tar::Entry<'_, R>,
    layer: &str,
) -> Result<Option<EntryHeader>, HeaderError> {
    let fail = |kind| HeaderError {
        layer: layer.to_owned(),
        kind,
    };
    let io_fail = |e| fail(HeaderErrorKind::Io(e));
    let pax = PaxFields::read(item).map_err(io_fail)?;
    if pax.gnu_sparse {
        // The tar crate reads only old GNU sparse headers; converting a PAX
        // sparse file would store its sparse map as content.
        return Err(fail(HeaderErrorKind::Unsupported(
            "PAX-format sparse file (GNU.sparse.*); re-create the layer with GNU tar --format=gnu"
                .into(),
        )));
    }
    let header = item.header();
    let (kind, content) = match header.entry_type() {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => (
            EntryKind::File {
                size: 0,
                chunks: Vec::new(),
            },
            true,
        ),
        EntryType::Directory => (EntryKind::Dir { opaque: false }, false),
        EntryType::Symlink => {
            let target = item
                .link_name_bytes()
                .ok_or_else(|| fail(HeaderErrorKind::Unsafe("symlink without target")))?;
            (
                EntryKind::Symlink {
                    target: target.into_owned(),
                },
                false,
            )
        }
        EntryType::Link => {
            let target = item
                .link_name_bytes()
                .ok_or_else(|| fail(HeaderErrorKind::Unsafe("hardlink without target")))?;
            let target = normalize(&target).map_err(|r| fail(HeaderErrorKind::Unsafe(r)))?;
            (EntryKind::Hardlink { target }, false)
        }
        EntryType::Char | EntryType::Block => {
            let device = if header.entry_type() == EntryType::Char {
                DeviceKind::Char
            } else {
                DeviceKind::Block
            };
            let major = header.device_major().map_err(io_fail)?.unwrap_or(0);
            let minor = header.device_minor().map_err(io_fail)?.unwrap_or(0);
            (
                EntryKind::Device {
                    kind: device,
                    major,
                    minor,
                },
                false,
            )
        }
        EntryType::Fifo => (EntryKind::Fifo, false),
        EntryType::XGlobalHeader => return Ok(None),
        other => {
            return Err(fail(HeaderErrorKind::Unsupported(format!(
                "tar entry type {:?}",
                other.as_byte() as char
            ))));
        }
    };
    let header_mtime = header.mtime().map_err(io_fail)?;
    let entry = Entry {
        path: Vec::new(),
        kind,
        mode: header.mode().map_err(io_fail)? & 0o7777,
        uid: id_field(pax.uid, header.uid().map_err(io_fail)?)
            .map_err(|r| fail(HeaderErrorKind::Unsupported(r)))?,
        gid: id_field(pax.gid, header.gid().map_err(io_fail)?)
            .map_err(|r| fail(HeaderErrorKind::Unsupported(r)))?,
        mtime_secs: pax
            .mtime
            .map_or(i64::try_from(header_mtime).unwrap_or(i64::MAX), |m| m.0),
        mtime_nanos: pax.mtime.map_or(0, |m| m.1),
        xattrs: pax.xattrs,
    };
    Ok(Some(EntryHeader { entry, content }))
}

fn id_field(pax: Option<u64>, header: u64) -> Result<u32, String> {
    let id = pax.unwrap_or(header);
    u32::try_from(id).map_err(|_| format!("uid/gid {id} does not fit 32 bits"))
}

/// The PAX records the tar crate leaves to us.
#[derive(Default)]
struct PaxFields {
    xattrs: Vec<Xattr>,
    mtime: Option<(i64, u32)>,
    uid: Option<u64>,
    gid: Option<u64>,
    gnu_sparse: bool,
}

impl PaxFields {
    fn read<R: Read>(item: &mut tar::Entry<'_, R>) -> io::Result<Self> {
        let mut fields = Self::default();
        let Some(records) = item.pax_extensions()? else {
            return Ok(fields);
        };
        for record in records {
            let record = record?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                fields.xattrs.push(Xattr {
                    name: name.to_vec(),
                    value: value.to_vec(),
                });
            } else if key == b"mtime" {
                fields.mtime = parse_pax_time(value);
            } else if key == b"uid" {
                fields.uid = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            } else if key == b"gid" {
                fields.gid = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            } else if key.starts_with(b"GNU.sparse.") {
                fields.gnu_sparse = true;
            }
        }
        Ok(fields)
    }
}

/// Parses a PAX time `[-]SECS[.FRACTION]` into seconds and nanoseconds.
fn parse_pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    // A negative time with a fraction counts back from the whole second.
    if secs < 0 && nanos > 0 {
        Some((secs - 1, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"12.123456789123"), Some((12, 123_456_789)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
