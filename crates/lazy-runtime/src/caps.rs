//! Dropping capabilities to docker's default set.

use caps::{CapSet, Capability, CapsHashSet};

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The default set as the bit mask `/proc/self/status` shows
/// (`0x00000000a80425fb`).
pub fn docker_default_mask() -> u64 {
    DOCKER_DEFAULT_CAPS
        .iter()
        .fold(0, |mask, cap| mask | cap.bitmask())
}

/// Limits the calling thread to docker's default set: bounding, permitted
/// and effective become the default set (intersected with what the thread
/// has), inheritable and ambient become empty. Docker has left inheritable
/// empty since CVE-2022-24769. A later `setuid` to a non-root user clears
/// permitted and effective, as with docker.
pub fn restrict_to_docker_defaults() -> Result<(), caps::errors::CapsError> {
    let keep: CapsHashSet = DOCKER_DEFAULT_CAPS.into_iter().collect();
    for cap in caps::all() {
        // Caps the running kernel does not know fail the read: nothing to drop.
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = permitted.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_matches_docker() {
        assert_eq!(docker_default_mask(), 0x0000_0000_a804_25fb);
    }
}
