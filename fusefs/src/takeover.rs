//! Taking over a live FUSE session: a new lazyfsd gets the `/dev/fuse`
//! descriptor of a dead or replaced one (from the supervisor that holds it)
//! and serves the same mount, so that readers never see it go away.
//!
//! The kernel sends INIT once per connection, and fuser starts every session
//! with that handshake. So fuser is given a socket first, with a copy of the
//! kernel's INIT written into it (what the first daemon was offered, saved
//! in `<cache>/fuse-session.json`); once fuser has answered it, the socket's
//! descriptor number is made to point at `/dev/fuse` (dup2), and fuser
//! reads the kernel's requests from there. Then the kernel is asked to queue
//! again every request the dead daemon had read but not answered
//! (FUSE_NOTIFY_RESEND, Linux 6.9): their callers never notice.
//!
//! lazyfsd serves two mounts, the layers and (optionally) Podman's layer
//! store ([`MountRole`]); each is handed over and taken over on its own.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use fuser::{Filesystem, InitFlags, KernelConfig, Session, SessionACL};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

/// The environment variable naming the socket to the supervisor, which
/// keeps the `/dev/fuse` descriptors while daemons come and go.
pub const SUPERVISOR_FD_ENV: &str = "LAZYFS_SUPERVISOR_FD";

/// A FUSE mount of lazyfsd's, as handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MountRole {
    /// The layers (`mountpoint`).
    Main,
    /// Podman's additional layer store (`layer_store`).
    Store,
}

impl MountRole {
    /// Every role.
    pub const ALL: [Self; 2] = [Self::Main, Self::Store];

    /// The byte naming the role in a descriptor's message.
    fn tag(self) -> u8 {
        match self {
            Self::Main => b'F',
            Self::Store => b'S',
        }
    }

    fn of_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.tag() == tag)
    }

    /// The environment variable naming the inherited `/dev/fuse`
    /// descriptor of a session of this role to take over.
    pub fn env(self) -> &'static str {
        match self {
            Self::Main => "LAZYFS_FUSE_FD",
            Self::Store => "LAZYFS_STORE_FUSE_FD",
        }
    }

    /// Where the kernel's INIT offer for this mount is saved.
    fn session_file(self, cache_dir: &Path) -> PathBuf {
        cache_dir.join(match self {
            Self::Main => "fuse-session.json",
            Self::Store => "store-fuse-session.json",
        })
    }
}

const FUSE_INIT: u32 = 26;
const FUSE_NOTIFY_RESEND: i32 = 7;
const IN_HEADER_LEN: usize = 40;
const INIT_IN_LEN: usize = 64;

/// What the kernel offered at INIT, to offer fuser the same again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionParams {
    /// FUSE ABI major version.
    pub major: u32,
    /// FUSE ABI minor version.
    pub minor: u32,
    /// The kernel's read-ahead limit.
    pub max_readahead: u32,
    /// Capability flags (both words).
    pub flags: u64,
}

impl SessionParams {
    /// The kernel's offer, as fuser shows it to `Filesystem::init`.
    pub fn of(config: &mut KernelConfig) -> Self {
        let abi = config.kernel_abi();
        let max_readahead = match config.set_max_readahead(u32::MAX) {
            Ok(_) => u32::MAX,
            Err(max) => max,
        };
        let _ = config.set_max_readahead(max_readahead);
        let mut flags = config.capabilities().bits();
        if flags >> 32 != 0 {
            flags |= InitFlags::FUSE_INIT_EXT.bits();
        }
        Self {
            major: abi.0,
            minor: abi.1,
            max_readahead,
            flags,
        }
    }

    /// Saves the offer for mount `role` next to the cache.
    fn save(&self, cache_dir: &Path, role: MountRole) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).expect("params serialize");
        lazy_statefile::write_atomic(
            &role.session_file(cache_dir),
            &bytes,
            lazy_statefile::Durability::Synced,
        )
    }

    /// The saved offer for mount `role`.
    fn load(cache_dir: &Path, role: MountRole) -> anyhow::Result<Self> {
        let path = role.session_file(cache_dir);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// An INIT request carrying this offer.
    fn init_request(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(IN_HEADER_LEN + INIT_IN_LEN);
        let len = u32::try_from(IN_HEADER_LEN + INIT_IN_LEN).expect("small");
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&FUSE_INIT.to_ne_bytes());
        out.extend_from_slice(&1u64.to_ne_bytes()); // unique
        out.extend_from_slice(&0u64.to_ne_bytes()); // nodeid
        out.extend_from_slice(&[0u8; 16]); // uid, gid, pid, extlen, padding
        out.extend_from_slice(&self.major.to_ne_bytes());
        out.extend_from_slice(&self.minor.to_ne_bytes());
        out.extend_from_slice(&self.max_readahead.to_ne_bytes());
        // flags (low word), then flags2 (high word).
        let low = u32::try_from(self.flags & 0xffff_ffff).expect("masked to 32 bits");
        let high = u32::try_from(self.flags >> 32).expect("shifted to 32 bits");
        out.extend_from_slice(&low.to_ne_bytes());
        out.extend_from_slice(&high.to_ne_bytes());
        out.extend_from_slice(&[0u8; 44]);
        out
    }
}

/// The kernel's INIT offer, as the filesystem saw it in `init`.
pub type Offer = Arc<Mutex<Option<SessionParams>>>;

/// How to start serving one mount.
pub struct Handover<'a> {
    /// Which mount.
    pub role: MountRole,
    /// Where it is.
    pub mountpoint: &'a Path,
    /// Where the INIT offer is saved.
    pub cache_dir: &'a Path,
    /// The socket to the supervisor, when supervised.
    pub supervisor: Option<BorrowedFd<'a>>,
    /// The live session's descriptor, when taking over.
    pub taken: Option<OwnedFd>,
}

/// Serves `filesystem` at `how.mountpoint`: takes the live session over
/// when a descriptor was inherited (and has the kernel resend what the
/// dead daemon left unanswered), else mounts anew, saves the kernel's
/// offer (which `filesystem` puts in `offer` at INIT) and hands the new
/// descriptor to the supervisor. Supervised, `config.clone_fd` must be
/// off, so that no request is read from a descriptor that dies with us.
pub fn start_session<FS: Filesystem + Send + 'static>(
    filesystem: FS,
    offer: &Offer,
    config: fuser::Config,
    how: Handover<'_>,
) -> anyhow::Result<fuser::BackgroundSession> {
    let acl = config.acl;
    let Some(taken) = how.taken else {
        let session = Session::new(filesystem, how.mountpoint, &config)
            .with_context(|| format!("mounting FUSE at {}", how.mountpoint.display()))?;
        let saved = *offer.lock().expect("offer lock");
        if let Some(offer) = saved
            && let Err(e) = offer.save(how.cache_dir, how.role)
        {
            tracing::warn!("saving the FUSE session's parameters: {e}");
        }
        if let Some(socket) = how.supervisor {
            send_fd(socket, session.as_fd(), how.role).with_context(|| {
                format!(
                    "handing the descriptor of {} to the supervisor",
                    how.mountpoint.display()
                )
            })?;
        }
        return session.spawn().context("starting the FUSE session");
    };
    let params = SessionParams::load(how.cache_dir, how.role)?;
    let session = session_on(filesystem, taken.try_clone()?, &params, acl, config)?;
    let background = session.spawn().context("starting the FUSE session")?;
    tracing::info!("took over the FUSE session at {}", how.mountpoint.display());
    // Requests the dead daemon read but never answered are queued again.
    if let Err(e) = resend_pending(taken.as_fd()) {
        tracing::warn!("asking the kernel to resend pending requests: {e}");
    }
    Ok(background)
}

/// A session of `filesystem` on the live `/dev/fuse` descriptor `fuse`,
/// whose INIT was answered long ago, by another process.
#[allow(unsafe_code)]
fn session_on<FS: Filesystem>(
    filesystem: FS,
    fuse: OwnedFd,
    params: &SessionParams,
    acl: SessionACL,
    config: fuser::Config,
) -> anyhow::Result<Session<FS>> {
    let flags = SockFlag::SOCK_CLOEXEC;
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, flags)
        .context("creating a socket pair")?;
    nix::unistd::write(&theirs, &params.init_request()).context("writing the INIT copy")?;
    let stand_in = ours.as_raw_fd();
    let session = Session::from_fd(filesystem, ours, acl, config)
        .context("starting a session on the INIT copy")?;
    // The session's descriptor number now names /dev/fuse. fuser's INIT
    // answer went to the socket, which closes with `theirs`.
    // SAFETY: `stand_in` is owned by the session and stays open; dup3
    // replaces what it refers to atomically, and `fuse` is a valid descriptor.
    let replaced = unsafe { nix::libc::dup3(fuse.as_raw_fd(), stand_in, nix::libc::O_CLOEXEC) };
    if replaced < 0 {
        return Err(std::io::Error::last_os_error()).context("moving /dev/fuse under the session");
    }
    drop(theirs);
    Ok(session)
}

/// Asks the kernel to queue again the requests read but not answered.
fn resend_pending(fuse: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut header = Vec::with_capacity(16);
    header.extend_from_slice(&16u32.to_ne_bytes());
    header.extend_from_slice(&FUSE_NOTIFY_RESEND.to_ne_bytes());
    header.extend_from_slice(&0u64.to_ne_bytes());
    nix::unistd::write(fuse, &header)?;
    Ok(())
}

/// Sends descriptor `fd` of mount `role` over the unix socket `socket`.
fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>, role: MountRole) -> std::io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let tag = [role.tag()];
    let message = [IoSlice::new(&tag)];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &message,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// What a daemon tells its supervisor.
#[derive(Debug)]
pub enum Notice {
    /// Hold this mount's descriptor.
    Hold(MountRole, OwnedFd),
    /// Close the descriptor held for this mount: no daemon serves it now.
    Release(MountRole),
}

/// Tells the supervisor on `socket` to close what it holds for mount
/// `role` (this daemon does not serve it), so that the old mount fails
/// with ENOTCONN instead of hanging.
pub fn release(socket: BorrowedFd<'_>, role: MountRole) -> std::io::Result<()> {
    let tag = [role.tag().to_ascii_lowercase()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(&tag)],
        &[],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives one notice from the unix socket `socket`; `None` when the
/// peer closed it (or sent something else).
#[allow(unsafe_code)]
pub fn recv_notice(socket: BorrowedFd<'_>) -> std::io::Result<Option<Notice>> {
    let mut tag = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut tag)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&raw) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us.
            fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
        }
    }
    if message.bytes == 0 {
        return Ok(None);
    }
    let tag = tag[0];
    Ok(match (fd, MountRole::of_tag(tag)) {
        (Some(fd), Some(role)) => Some(Notice::Hold(role, fd)),
        (None, _) => MountRole::of_tag(tag.to_ascii_uppercase())
            .filter(|_| tag.is_ascii_lowercase())
            .map(Notice::Release),
        (Some(_), None) => None,
    })
}

/// An inherited descriptor named by environment variable `name`, if set.
#[allow(unsafe_code)]
pub fn inherited_fd(name: &str) -> anyhow::Result<Option<OwnedFd>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    let fd: RawFd = text
        .parse()
        .with_context(|| format!("{name}={text} is not a descriptor number"))?;
    // SAFETY: F_GETFD only reads the flags of whatever `fd` is.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        anyhow::bail!("{name}={fd} is not an open descriptor");
    }
    // SAFETY: open (checked above), passed to us by our parent under this
    // name, and owned by nothing else in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(Some(owned))
}
