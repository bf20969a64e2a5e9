//! OCI distribution client and OCI image-layout directories for lazyfs.
//!
//! - [`Reference`] and [`ImageLocation`] parse what users type
//!   (`busybox`, `localhost:5000/a/b:t`, `oci:/dir:tag`).
//! - [`RegistryClient`] fetches manifests (resolving indexes to linux/amd64),
//!   configs, whole or streamed or ranged blobs, and pushes blobs and
//!   manifests, with token/basic authentication from the docker config and
//!   retries of transient failures. Everything read is size-limited and
//!   digest-verified. Requests go through an ordered proxy list with
//!   failover ([`Routes`]).
//! - [`OciLayout`] reads and writes image-layout directories.

mod blob_stream;
mod challenge;
mod client;
mod digest;
mod docker_config;
mod down_list;
mod error;
mod layout;
mod location;
mod manifest;
mod options;
mod reference;
mod routes;

pub use blob_stream::BlobStream;
pub use client::{PushOutcome, RegistryClient, read_limited, unexpected_status};
pub use digest::{sha256_digest, validate_digest};
pub use down_list::DownList;
pub use error::{CredentialState, OciError};
pub use layout::{OciLayout, REF_NAME_ANNOTATION};
pub use location::ImageLocation;
pub use manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, FetchedManifest, MANIFEST_ACCEPT, MANIFEST_SIZE_LIMIT,
    OCI_INDEX, OCI_MANIFEST,
};
pub use options::ClientOptions;
pub use reference::Reference;
pub use routes::{DIRECT, Route, Routes, describe, is_route_failure};

/// Re-export of the `oci-spec` image types used in this API.
pub use oci_spec::image as spec;
