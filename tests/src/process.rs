//! Running programs in tests: their output as text, success required.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A finished program's status, stdout and stderr, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `program ARGS`, which must succeed; its stdout.
pub fn run_ok(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The md5 of `data` in hex, as `md5sum` prints it (computed by md5sum
/// itself, the tool the containers check their reads with).
pub fn md5_hex(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running md5sum");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(data)
        .expect("feeding md5sum");
    let out = child.wait_with_output().expect("md5sum's output");
    String::from_utf8_lossy(&out.stdout)[..32].to_owned()
}
