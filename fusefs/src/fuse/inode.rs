//! Inode numbers, derived from (layer slot, entry index) so that they are
//! the same after a daemon restart (a new daemon can take over the session).

/// The mount's root directory, which lists the attached layers.
pub const ROOT_INO: u64 = 1;
/// `<mount>/images`, which lists the flat image views.
pub const IMAGES_INO: u64 = 2;
/// The name of [`IMAGES_INO`] in the root.
pub const IMAGES_DIR: &[u8] = b"images";
/// Flat image views take slots from here on, apart from layers'.
pub const FLAT_SLOT_BASE: u32 = 1 << 23;
const ENTRY_BITS: u32 = 40;
const ENTRY_MASK: u64 = (1 << ENTRY_BITS) - 1;

/// Where an inode points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InodeRef {
    /// The mount root.
    Root,
    /// The directory of flat image views.
    Images,
    /// Entry `index` of the layer in `slot`.
    Entry {
        /// Layer slot (1-based, stable across restarts).
        slot: u32,
        /// Index into the layer's entries.
        index: u32,
    },
}

/// The inode of entry `index` of the layer in `slot`.
pub fn ino_of(slot: u32, index: u32) -> u64 {
    (u64::from(slot) << ENTRY_BITS) | (u64::from(index) + 1)
}

/// Decodes an inode number; `None` for numbers this daemon never gave out.
pub fn decode(ino: u64) -> Option<InodeRef> {
    match ino {
        ROOT_INO => return Some(InodeRef::Root),
        IMAGES_INO => return Some(InodeRef::Images),
        _ => {}
    }
    let slot = u32::try_from(ino >> ENTRY_BITS).ok().filter(|s| *s > 0)?;
    let index = u32::try_from((ino & ENTRY_MASK).checked_sub(1)?).ok()?;
    Some(InodeRef::Entry { slot, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (slot, index) in [(1, 0), (7, 12345), (u32::MAX >> 8, u32::MAX - 1)] {
            assert_eq!(
                decode(ino_of(slot, index)),
                Some(InodeRef::Entry { slot, index })
            );
        }
        assert_eq!(decode(ROOT_INO), Some(InodeRef::Root));
        assert_eq!(decode(0), None);
        assert_eq!(decode(IMAGES_INO), Some(InodeRef::Images));
        assert_eq!(decode(5), None, "slot 0 only has the root and images");
    }
}
