//! The image's `/etc/ld.so.cache` (glibc's "glibc-ld.so.cache1.1" format):
//! library name → path, which the dynamic linker consults after an
//! object's own search paths.

use std::collections::HashMap;

use super::elf::c_string;

const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 24;
/// `FLAG_ELF_LIBC6`: the entries a glibc program loads.
const ELF_LIBC6: u32 = 0x0003;
/// The architecture bits of an entry's flags for this host.
const HOST_ARCH: u32 = if cfg!(target_arch = "aarch64") {
    0x0a00
} else {
    0x0300
};

/// Library name → path in the image.
#[derive(Debug, Default)]
pub struct LdCache {
    paths: HashMap<Vec<u8>, Vec<u8>>,
}

impl LdCache {
    /// Parses the cache file; an unknown format gives an empty map. Of
    /// several entries for one name, the host architecture's wins.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut cache = Self::default();
        // Old caches put the new format after a compatibility section.
        let Some(base) = bytes.windows(MAGIC.len()).position(|w| w == MAGIC) else {
            return cache;
        };
        let new = &bytes[base..];
        let Some(count) = new
            .get(20..24)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        else {
            return cache;
        };
        let mut host = HashMap::new();
        for i in 0..count as usize {
            let at = HEADER_LEN + i * ENTRY_LEN;
            let Some(entry) = new.get(at..at + ENTRY_LEN) else {
                break;
            };
            let word = |k: usize| u32::from_le_bytes(entry[k..k + 4].try_into().expect("4 bytes"));
            let (flags, key, value) = (word(0), word(4) as usize, word(8) as usize);
            if flags & 0xff != ELF_LIBC6 {
                continue;
            }
            let (Some(name), Some(path)) = (c_string(new, key), c_string(new, value)) else {
                continue;
            };
            if flags & 0xff00 == HOST_ARCH {
                host.entry(name.clone()).or_insert_with(|| path.clone());
            }
            cache.paths.entry(name).or_insert(path);
        }
        cache.paths.extend(host);
        cache
    }

    /// The path of library `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.paths.get(name).map(Vec::as_slice)
    }

    /// How many libraries it lists.
    pub fn len(&self) -> usize {
        self.paths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hosts_cache() {
        let bytes = std::fs::read("/etc/ld.so.cache").expect("the host's ld.so.cache");
        let cache = LdCache::parse(&bytes);
        assert!(cache.len() > 10, "{} entries", cache.len());
        let libc = cache.get(b"libc.so.6").expect("libc.so.6 listed");
        assert!(
            libc.ends_with(b"/libc.so.6"),
            "{}",
            String::from_utf8_lossy(libc)
        );
        assert!(std::path::Path::new(std::str::from_utf8(libc).unwrap()).exists());
    }

    #[test]
    fn garbage_gives_an_empty_cache() {
        assert_eq!(LdCache::parse(b"not a cache").len(), 0);
        let mut truncated = MAGIC.to_vec();
        truncated.extend_from_slice(&[0xff; 8]);
        assert_eq!(LdCache::parse(&truncated).len(), 0);
    }
}
