# Shared by scripts/demo and scripts/test: installs what layerpass needs, idempotently.
# shellcheck shell=bash

# apt packages every script here may use.
LAYERPASS_APT_PACKAGES=(cryptsetup-bin erofs-utils e2fsprogs busybox-static cpio kmod skopeo xz-utils zstd fdisk gdisk libdevmapper-dev libclang-dev pkg-config swtpm debootstrap)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_apt_packages PKG...: installs the packages that are not installed yet.
ensure_apt_packages() {
  local missing=()
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# debian_mirror: the Debian archive URI this machine's own apt sources use (deb822
# `.sources` files or one-line `sources.list` entries); no host is ever assumed.
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\// && $i ~ /\/debian\/?$/) { print $i; exit } }')
  fi
  if [ -z "$uri" ]; then
    echo "no Debian archive found in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/): add the Debian mirror you use, then run this again" >&2
    return 1
  fi
  echo "${uri%/}"
}

# ensure_qemu: QEMU 10 (qemu-system-x86_64, qemu-storage-daemon) from bookworm-backports,
# for the VM tests. Adds the backports source (same mirror as the main Debian source) once.
ensure_qemu() {
  local src=/etc/apt/sources.list.d/layerpass-backports.sources
  if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-storage-daemon >/dev/null; then
    if [ ! -e "$src" ]; then
      local uri
      uri=$(debian_mirror) || exit 1
      echo "==> adding bookworm-backports ($uri) in $src" >&2
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" | as_root tee "$src" >/dev/null
    fi
    echo "==> installing qemu-system-x86 qemu-system-common from bookworm-backports" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -t bookworm-backports qemu-system-x86 qemu-system-common >&2
  fi
}

ensure_rust() {
  command -v cargo >/dev/null || {
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
  }
}
