//! The HTTP content-addressed store: a lazy image as static, immutable
//! files that any web server serves and any HTTP proxy caches whole, as
//! CernVM-FS stores its repositories.
//!
//! ```text
//! <store>/lazyfs-store            format marker
//! <store>/data/ab/cdef…           every object, named by the sha256 of its bytes:
//!                                 manifests, configs, and the pieces of layer blobs
//! <store>/pieces/ab/cdef…         how layer blob sha256:abcdef… splits into pieces
//! <store>/tags/<repository>/<tag> the manifest digest a tag names (the only mutable files)
//! ```
//!
//! A layer blob is not stored whole: it is cut at its chunk boundaries, so
//! that each chunk (and the metadata tail) is one object a reader fetches
//! without Range requests, and chunks shared between layers are stored once.
//!
//! - [`layout`]: paths; [`PieceTable`]: the cut of one blob.
//! - [`StoreWriter`]: writes objects, piece tables and tags into a directory.
//! - [`CasClient`]: reads them over HTTP through ordered mirrors and proxies,
//!   verifying every object's digest.

mod client;
pub mod layout;
mod pieces;
mod writer;

pub use client::{CasClient, CasOptions};
pub use pieces::{Piece, PieceTable};
pub use writer::StoreWriter;
