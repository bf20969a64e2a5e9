//! Handing a container to an external OCI runtime (runc, crun).

use std::path::Path;

use crate::error::RuntimeError;
use crate::spec::{ContainerSpec, ExitStatus};

/// Writes an OCI runtime bundle (`config.json`) for `spec` into `bundle_dir`.
/// Not implemented yet.
pub fn write_oci_bundle(spec: &ContainerSpec, bundle_dir: &Path) -> Result<(), RuntimeError> {
    let _ = spec;
    Err(RuntimeError::OciBundle {
        path: bundle_dir.to_path_buf(),
        reason: "OCI bundles are not implemented yet".into(),
    })
}

/// Runs the bundle with `runtime` in the foreground. Not implemented yet.
pub fn run_with_oci_runtime(
    runtime: &Path,
    bundle_dir: &Path,
    id: &str,
) -> Result<ExitStatus, RuntimeError> {
    let _ = (bundle_dir, id);
    Err(RuntimeError::OciRuntime {
        runtime: runtime.to_path_buf(),
        op: "run",
        source: std::io::Error::from(std::io::ErrorKind::Unsupported),
    })
}
