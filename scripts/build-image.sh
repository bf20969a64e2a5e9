# Sourced: builds OCI images from Debian packages, the way Docker Hub's
# Debian-based images are made (debootstrap minbase, then apt-get install in
# a second layer). Nothing is assumed to exist from an earlier run: the cache
# directory is created on first use.
#
#   LAZYFS_DEMO_CACHE   where the debootstrap tree and built images are cached
#                       (default /var/cache/lazyfs); point it at an empty
#                       directory to build everything from nothing
#   DEBIAN_SUITE, DEBIAN_MIRROR   what debootstrap installs, from where

DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LAZYFS_DEMO_CACHE=${LAZYFS_DEMO_CACHE:-/var/cache/lazyfs}

# The packages of the r-base-like benchmark image, as Docker Hub's r-base
# Dockerfile installs them.
RBASE_PACKAGES=(r-base-core r-base-dev r-recommended littler ed less locales vim-tiny wget ca-certificates)
# A Python image with the scientific stack's big shared libraries.
PYTHON_PACKAGES=(python3 python3-numpy python3-scipy ca-certificates)

# run_logged LOG CMD...: runs CMD with its output in LOG; when it fails,
# prints the tail of LOG (so the error is on the screen, not only in a file).
run_logged() {
  local log=$1
  shift
  mkdir -p "$(dirname "$log")"
  if ! "$@" >"$log" 2>&1; then
    echo "!! failed: $*" >&2
    echo "!! last lines of $log:" >&2
    tail -n 25 "$log" | sed 's/^/   | /' >&2
    return 1
  fi
}

# debootstrap_tree: prints the cached debootstrap tree of $DEBIAN_SUITE,
# making it first when it is not there (or was left incomplete).
debootstrap_tree() {
  local tree=$LAZYFS_DEMO_CACHE/debootstrap-$DEBIAN_SUITE
  if [ ! -f "$tree/.complete" ]; then
    echo ">> debootstrap $DEBIAN_SUITE (minbase) into $tree (cached for next time)" >&2
    mkdir -p "$LAZYFS_DEMO_CACHE"
    rm -rf "$tree"
    run_logged "$tree.log" debootstrap --variant=minbase "$DEBIAN_SUITE" "$tree" "$DEBIAN_MIRROR" || return 1
    rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*
    touch "$tree/.complete"
  fi
  echo "$tree"
}

# build_debian_image LAYOUT TAG [PACKAGES...]: the image (debootstrap layer,
# plus a layer with PACKAGES) into the OCI layout LAYOUT:TAG.
build_debian_image() {
  local layout=$1 tag=$2 tree bundle
  shift 2
  tree=$(debootstrap_tree) || return 1
  bundle=$(mktemp -d)
  rm -rf "$layout"
  mkdir -p "$(dirname "$layout")"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle/b" >/dev/null
  (cd "$tree" && tar --exclude=./.complete -cf - .) | tar -xf - -C "$bundle/b/rootfs"
  umoci repack --refresh-bundle --image "$layout:$tag" "$bundle/b" >/dev/null
  if [ $# -gt 0 ]; then
    echo ">> apt-get install $* (second layer)" >&2
    local root=$bundle/b/rootfs status=0
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    run_logged "$layout.apt.log" chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* && apt-get clean && rm -rf /var/lib/apt/lists/*" \
      || status=1
    umount "$root/proc"
    if [ $status -ne 0 ]; then rm -rf "$bundle"; return 1; fi
    rm -f "$root/etc/resolv.conf"
    umoci repack --image "$layout:$tag" "$bundle/b" >/dev/null
  fi
  umoci config --image "$layout:$tag" --config.cmd=/bin/bash \
    --config.env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" >/dev/null
  umoci gc --layout "$layout"
  rm -rf "$bundle"
}

# cached_image NAME PACKAGES...: prints the OCI layout (tag latest) of the
# Debian image with PACKAGES, $LAZYFS_DEMO_CACHE/NAME-oci, building it there
# when it is not.
cached_image() {
  local layout=$LAZYFS_DEMO_CACHE/$1-oci
  shift
  if [ ! -f "$layout/index.json" ]; then
    # Built aside and renamed, so a failed build never looks like a cached one.
    build_debian_image "$layout.partial" latest "$@" >&2 || return 1
    mv "$layout.partial" "$layout"
  fi
  echo "$layout"
}

# The r-base-like benchmark image, and a Python one (bench/coldstart-wan.sh).
rbase_image() { cached_image rbase "${RBASE_PACKAGES[@]}"; }
python_image() { cached_image python "${PYTHON_PACKAGES[@]}"; }
