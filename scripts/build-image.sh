# Sourced: build_debian_image ROOTFS_CACHE LAYOUT TAG [PACKAGES...] builds an
# OCI image from Debian packages, the way Docker Hub's Debian-based images
# are made (debootstrap minbase, then apt-get install in a second layer),
# into the OCI layout LAYOUT:TAG. The debootstrap tree is cached.

DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

build_debian_image() {
  local cache=$1 layout=$2 tag=$3
  shift 3
  if [ ! -f "$cache/.complete" ]; then
    echo ">> debootstrap $DEBIAN_SUITE (minbase) into $cache (cached for next time)" >&2
    rm -rf "$cache"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$cache" "$DEBIAN_MIRROR" >"$cache.log" 2>&1 \
      || { echo "debootstrap failed; see $cache.log" >&2; return 1; }
    rm -rf "$cache"/var/cache/apt/archives/*.deb "$cache"/var/lib/apt/lists/*
    touch "$cache/.complete"
  fi
  local bundle
  bundle=$(mktemp -d)
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle/b" >/dev/null
  (cd "$cache" && tar --exclude=./.complete -cf - .) | tar -xf - -C "$bundle/b/rootfs"
  umoci repack --refresh-bundle --image "$layout:$tag" "$bundle/b" >/dev/null
  if [ $# -gt 0 ]; then
    echo ">> apt-get install $* (second layer)" >&2
    local root=$bundle/b/rootfs
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* && apt-get clean && rm -rf /var/lib/apt/lists/*" \
      >"$layout.apt.log" 2>&1 || { umount "$root/proc"; echo "apt-get failed; see $layout.apt.log" >&2; return 1; }
    umount "$root/proc"
    rm -f "$root/etc/resolv.conf"
    umoci repack --image "$layout:$tag" "$bundle/b" >/dev/null
  fi
  umoci config --image "$layout:$tag" --config.cmd=/bin/bash \
    --config.env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" >/dev/null
  umoci gc --layout "$layout"
  rm -rf "$bundle"
}
