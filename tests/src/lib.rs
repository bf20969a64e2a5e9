//! Test harness shared by lazyfs integration tests: starts real components
//! (the Debian `docker-registry`), builds test images locally, compares trees.
//! Everything here is an RAII guard or a pure helper; nothing is mocked.

pub mod containerd;
pub mod daemon;
pub mod http;
pub mod images;
pub mod layout;
pub mod netns;
pub mod podman;
pub mod process;
pub mod registry;
pub mod tarball;
pub mod tree;

/// Skips a test that needs root, or fails it when `LAZY_REQUIRE_PRIVILEGED=1`
/// (CI sets it) so that a privileged test can never pass without running.
#[macro_export]
macro_rules! require_privileges {
    () => {
        if let Some(why) = $crate::missing_privileges() {
            if std::env::var("LAZY_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
                panic!("privileged test cannot run: {why} (LAZY_REQUIRE_PRIVILEGED=1)");
            }
            eprintln!("SKIPPED {why}");
            return;
        }
    };
}

/// Why privileged tests cannot run here, if they cannot.
pub fn missing_privileges() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid_is_root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !euid_is_root {
        return Some("not running as root".into());
    }
    None
}

/// Finds a program on `PATH`, or fails with the Debian package that provides it.
pub fn require_program(name: &str, package: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("`{name}` not found on PATH: apt-get install {package}"))
}
