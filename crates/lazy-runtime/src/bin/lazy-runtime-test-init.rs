//! Test helper for lazy-runtime's integration tests: the container init
//! (via `init_main_if_requested`) and a minimal `lazyrun` stand-in:
//!
//! - `lazy-runtime-test-init run SPEC.json` runs the container described by
//!   the JSON spec with the built-in runtime;
//! - `lazy-runtime-test-init oci RUNTIME BUNDLE SPEC.json` writes an OCI
//!   bundle for it and runs it with `RUNTIME` (runc, crun).
//!
//! Either way it exits with docker's exit code.

use std::path::Path;

use lazy_runtime::{ContainerSpec, RuntimeError};

fn main() {
    lazy_runtime::init_main_if_requested();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["run", spec] => run_builtin(&load(spec)),
        ["oci", runtime, bundle, spec] => {
            run_oci(&load(spec), Path::new(runtime), Path::new(bundle))
        }
        _ => {
            eprintln!("usage: lazy-runtime-test-init run SPEC.json | oci RUNTIME BUNDLE SPEC.json");
            std::process::exit(2);
        }
    };
    let code = match result {
        Ok(status) => status.docker_exit_code(),
        Err(e) => {
            eprintln!("lazy-runtime-test-init: {e}");
            e.docker_exit_code()
        }
    };
    std::process::exit(code)
}

fn load(path: &str) -> ContainerSpec {
    let loaded = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
    loaded.unwrap_or_else(|e| {
        eprintln!("lazy-runtime-test-init: {path}: {e}");
        std::process::exit(2)
    })
}

fn run_builtin(spec: &ContainerSpec) -> Result<lazy_runtime::ExitStatus, RuntimeError> {
    let init_exe = std::env::current_exe().map_err(|source| RuntimeError::SpawnInit {
        init_exe: "/proc/self/exe".into(),
        source,
    })?;
    lazy_runtime::run(spec, &init_exe)
}

fn run_oci(
    spec: &ContainerSpec,
    runtime: &Path,
    bundle: &Path,
) -> Result<lazy_runtime::ExitStatus, RuntimeError> {
    lazy_runtime::write_oci_bundle(spec, bundle)?;
    lazy_runtime::run_with_oci_runtime(runtime, bundle, &spec.id)
}
