//! Just enough of ELF (64-bit, little-endian) to find what the dynamic
//! linker reads of an object: its program headers, its dynamic section and
//! the libraries that names (`DT_NEEDED`), its search paths and its
//! interpreter. Everything is read from byte slices of the file and checked
//! against their bounds: a truncated or hostile file yields less, not a panic.

use std::ops::Range;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_W: u32 = 2;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
/// Program headers beyond this are not looked at (real objects have ~15).
const MAX_PHDRS: u16 = 64;

/// A loadable segment: where it is in the file and in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    writable: bool,
}

/// What the program headers say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Segments {
    loads: Vec<Load>,
    /// File range of the dynamic section.
    pub dynamic: Option<Range<u64>>,
    /// File range of the interpreter's path (NUL-terminated).
    pub interp: Option<Range<u64>>,
}

impl Segments {
    /// Parses the ELF header and program headers from the first bytes of
    /// a file. `None` when it is not a 64-bit little-endian ELF object or
    /// its program headers lie beyond `head`.
    pub fn parse(head: &[u8]) -> Option<Self> {
        if head.get(..6)? != b"\x7fELF\x02\x01" {
            return None;
        }
        let phoff = usize::try_from(u64_at(head, 32)?).ok()?;
        let phentsize = usize::from(u16_at(head, 54)?);
        let phnum = u16_at(head, 56)?.min(MAX_PHDRS);
        if phentsize < 56 {
            return None;
        }
        let mut segments = Segments::default();
        for i in 0..usize::from(phnum) {
            let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
            let (kind, flags) = (u32_at(head, ph)?, u32_at(head, ph.saturating_add(4))?);
            let (offset, vaddr, filesz) = (
                u64_at(head, ph.saturating_add(8))?,
                u64_at(head, ph.saturating_add(16))?,
                u64_at(head, ph.saturating_add(32))?,
            );
            let range = offset..offset.checked_add(filesz)?;
            match kind {
                PT_LOAD => segments.loads.push(Load {
                    vaddr,
                    offset,
                    filesz,
                    writable: flags & PF_W != 0,
                }),
                PT_DYNAMIC => segments.dynamic = Some(range),
                PT_INTERP => segments.interp = Some(range),
                _ => {}
            }
        }
        Some(segments)
    }

    /// File ranges of the writable segments: relocation writes touch
    /// them as soon as the object is loaded.
    pub fn writable(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.loads
            .iter()
            .filter(|l| l.writable)
            .map(|l| l.offset..l.offset + l.filesz)
    }

    /// The file offset of a virtual address, through the load segments.
    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|l| l.vaddr <= vaddr && vaddr - l.vaddr < l.filesz)
            .map(|l| vaddr - l.vaddr + l.offset)
    }
}

/// The dynamic section's entries that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dynamic {
    /// String-table offsets of the needed libraries' names.
    needed: Vec<u64>,
    /// String-table offsets of the search paths (RUNPATH, else RPATH).
    paths: Vec<u64>,
    /// File range of the string table.
    pub strtab: Option<Range<u64>>,
}

impl Dynamic {
    /// Parses a dynamic section's bytes; the string table is located
    /// through `segments`.
    pub fn parse(bytes: &[u8], segments: &Segments) -> Self {
        let mut dynamic = Dynamic::default();
        let (mut strtab, mut strsz, mut rpath, mut runpath) = (None, None, Vec::new(), Vec::new());
        for entry in bytes.chunks_exact(16) {
            let (tag, value) = (u64_at(entry, 0), u64_at(entry, 8));
            let (Some(tag), Some(value)) = (tag, value) else {
                break;
            };
            match tag {
                DT_NULL => break,
                DT_NEEDED => dynamic.needed.push(value),
                DT_STRTAB => strtab = Some(value),
                DT_STRSZ => strsz = Some(value),
                DT_RPATH => rpath.push(value),
                DT_RUNPATH => runpath.push(value),
                _ => {}
            }
        }
        // As ld.so: RPATH only counts when there is no RUNPATH.
        dynamic.paths = if runpath.is_empty() { rpath } else { runpath };
        if let (Some(vaddr), Some(size)) = (strtab, strsz)
            && let Some(start) = segments.file_offset(vaddr)
        {
            dynamic.strtab = start.checked_add(size).map(|end| start..end);
        }
        dynamic
    }

    /// The needed libraries' names and the search path entries, read from
    /// the string table's bytes.
    pub fn names(&self, strtab: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let strings = |offsets: &[u64]| -> Vec<Vec<u8>> {
            offsets
                .iter()
                .filter_map(|&at| c_string(strtab, usize::try_from(at).ok()?))
                .collect()
        };
        let paths = strings(&self.paths)
            .iter()
            .flat_map(|p| p.split(|&b| b == b':').map(<[u8]>::to_vec))
            .filter(|p| !p.is_empty())
            .collect();
        (strings(&self.needed), paths)
    }
}

/// The NUL-terminated string at `at`, without the NUL.
pub fn c_string(bytes: &[u8], at: usize) -> Option<Vec<u8>> {
    let rest = bytes.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(rest[..end].to_vec())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(file: &[u8], range: &Range<u64>) -> Vec<u8> {
        let at = |v: u64| usize::try_from(v).unwrap();
        file[at(range.start)..at(range.end)].to_vec()
    }

    /// The host's own shell: its needed libraries must include libc.
    #[test]
    fn finds_the_needed_libraries_of_a_real_executable() {
        let file = std::fs::read("/bin/sh")
            .or_else(|_| std::fs::read("/bin/bash"))
            .unwrap();
        let segments = Segments::parse(&file[..4096.min(file.len())]).expect("ELF");
        let interp = slice(&file, segments.interp.as_ref().expect("PT_INTERP"));
        assert!(
            interp.starts_with(b"/lib"),
            "{:?}",
            String::from_utf8_lossy(&interp)
        );
        let dynamic = Dynamic::parse(&slice(&file, segments.dynamic.as_ref().unwrap()), &segments);
        let strtab = slice(&file, dynamic.strtab.as_ref().expect("string table"));
        let (needed, _) = dynamic.names(&strtab);
        assert!(
            needed.iter().any(|n| n.starts_with(b"libc.so")),
            "{needed:?}"
        );
        assert!(segments.writable().next().is_some());
    }

    #[test]
    fn rejects_what_is_not_a_64_bit_little_endian_elf() {
        assert_eq!(Segments::parse(b"#!/bin/sh\n"), None);
        assert_eq!(Segments::parse(b"\x7fELF\x01\x01"), None);
        assert_eq!(
            Segments::parse(b"\x7fELF\x02\x01\x01\x00"),
            None,
            "truncated"
        );
    }

    #[test]
    fn hostile_headers_yield_nothing_rather_than_panic() {
        let mut head = vec![0u8; 128];
        head[..6].copy_from_slice(b"\x7fELF\x02\x01");
        head[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // phoff
        head[54..56].copy_from_slice(&56u16.to_le_bytes());
        head[56..58].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(Segments::parse(&head), None);
        // A dynamic section naming strings past the table's end.
        let mut dynamic = Vec::new();
        for (tag, value) in [(DT_NEEDED, 1000u64), (DT_RUNPATH, 2), (DT_NULL, 0)] {
            dynamic.extend_from_slice(&tag.to_le_bytes());
            dynamic.extend_from_slice(&value.to_le_bytes());
        }
        let parsed = Dynamic::parse(&dynamic, &Segments::default());
        assert_eq!(parsed.strtab, None, "no load segment maps it");
        let (needed, paths) = parsed.names(b"\0\0a:b\0");
        assert!(needed.is_empty());
        assert_eq!(paths, [b"a".to_vec(), b"b".to_vec()]);
    }

    proptest::proptest! {
        /// Any bytes, as a header with program headers, a dynamic section
        /// and a string table: parsing ends without a panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            mut head in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            dynamic in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            strtab in proptest::collection::vec(proptest::num::u8::ANY, 0..128),
        ) {
            if head.len() >= 64 {
                head[..6].copy_from_slice(b"\x7fELF\x02\x01");
                head[54] = 56; // phentsize, so that program headers are read
            }
            let segments = Segments::parse(&head).unwrap_or_default();
            let _ = segments.writable().count();
            let parsed = Dynamic::parse(&dynamic, &segments);
            let _ = parsed.names(&strtab);
            let _ = super::super::ldcache::LdCache::parse(&head);
        }
    }
}
