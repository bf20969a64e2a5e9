# Sourced: use_rust_toolchain puts a Rust toolchain that can build lazyfs on
# PATH. It looks on PATH and in ~/.cargo/bin; where there is none, it
# installs one with rustup (from static.rust-lang.org, checksum verified);
# where the one found is too old and rustup manages it, it installs
# $LAZYFS_RUST beside it and selects it for this build only.

LAZYFS_MIN_RUST=1.88             # what the locked dependencies need (edition 2024 needs 1.85)
LAZYFS_RUST=${LAZYFS_RUST:-1.95.0} # what is installed when none fits; the version CI uses

rust_version() { rustc --version 2>/dev/null | awk '{print $2}'; }

version_at_least() { # A B: is version A >= B?
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

install_rustup() {
  local arch url tmp
  arch=$(uname -m)-unknown-linux-gnu
  url=https://static.rust-lang.org/rustup/dist/$arch/rustup-init
  tmp=$(mktemp -d)
  echo ">> no Rust toolchain found: installing Rust $LAZYFS_RUST with rustup into ${CARGO_HOME:-$HOME/.cargo}" >&2
  if ! curl -fsSL --proto '=https' -o "$tmp/rustup-init" "$url" ||
     ! curl -fsSL --proto '=https' -o "$tmp/rustup-init.sha256" "$url.sha256"; then
    echo "!! could not download $url; install a Rust toolchain >= $LAZYFS_MIN_RUST (https://rustup.rs) and re-run" >&2
    rm -rf "$tmp"; return 1
  fi
  if [ "$(awk '{print $1}' "$tmp/rustup-init.sha256")" != "$(sha256sum "$tmp/rustup-init" | awk '{print $1}')" ]; then
    echo "!! rustup-init does not match its published sha256; not run" >&2
    rm -rf "$tmp"; return 1
  fi
  chmod +x "$tmp/rustup-init"
  "$tmp/rustup-init" -y --no-modify-path --profile minimal --default-toolchain "$LAZYFS_RUST" >&2 || { rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
}

use_rust_toolchain() {
  local bin=${CARGO_HOME:-$HOME/.cargo}/bin
  command -v cargo >/dev/null || { [ -x "$bin/cargo" ] && export PATH=$bin:$PATH; }
  if ! command -v cargo >/dev/null; then
    install_rustup || return 1
    export PATH=$bin:$PATH
  fi
  local have
  have=$(rust_version)
  if ! version_at_least "$have" "$LAZYFS_MIN_RUST"; then
    if ! command -v rustup >/dev/null; then
      echo "!! rustc $have is older than $LAZYFS_MIN_RUST, which lazyfs needs; install a newer one (https://rustup.rs)" >&2
      return 1
    fi
    echo ">> rustc $have is older than $LAZYFS_MIN_RUST: installing $LAZYFS_RUST with rustup, used for lazyfs only" >&2
    rustup toolchain install --profile minimal "$LAZYFS_RUST" >&2 || return 1
    export RUSTUP_TOOLCHAIN=$LAZYFS_RUST
  fi
}

# build_release BIN...: the release build of these binaries, in target/release.
build_release() {
  use_rust_toolchain || return 1
  local args=() b
  for b in "$@"; do args+=(--bin "$b"); done
  cargo build --release --quiet "${args[@]}"
}
