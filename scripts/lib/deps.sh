# Shared by scripts/demo and scripts/test: installs what layerpass needs, idempotently.
# shellcheck shell=bash

# apt packages every script here may use.
LAYERPASS_APT_PACKAGES=(cryptsetup-bin erofs-utils e2fsprogs busybox-static cpio kmod)

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

ensure_rust() {
  command -v cargo >/dev/null || {
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
  }
}
