//! Running programs in tests: their output as text, success required.

use std::path::Path;
use std::process::{Command, Output};

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
