# Helpers for guest test scripts (sourced before /test.sh).

# lp_wait SECONDS CMD...: retries CMD every 0.1 s until it succeeds or SECONDS pass.
lp_wait() {
  _lp_t=$(($1 * 10))
  shift
  while ! "$@" 2>/dev/null; do
    _lp_t=$((_lp_t - 1))
    [ "$_lp_t" -gt 0 ] || return 1
    sleep 0.1
  done
}

_lp_find_port() {
  for _lp_d in /sys/class/virtio-ports/*; do
    if [ -e "$_lp_d/name" ] && [ "$(cat "$_lp_d/name")" = "$1" ]; then
      mkdir -p /dev/virtio-ports
      ln -sf "../${_lp_d##*/}" "/dev/virtio-ports/$1"
      return 0
    fi
  done
  return 1
}

# lp_port NAME [SECONDS]: waits for the virtio-serial port NAME, makes the
# /dev/virtio-ports/NAME link udev would make, prints that path.
lp_port() {
  if ! lp_wait "${2:-30}" _lp_find_port "$1"; then
    echo "lp_port: no virtio-serial port named $1" >&2
    return 1
  fi
  echo "/dev/virtio-ports/$1"
}

_lp_find_disk() {
  for _lp_d in /sys/block/vd*; do
    if [ -e "$_lp_d/serial" ] && [ "$(cat "$_lp_d/serial")" = "$1" ]; then
      _lp_disk="/dev/${_lp_d##*/}"
      [ -b "$_lp_disk" ] && return 0
    fi
  done
  return 1
}

# lp_disk SERIAL [SECONDS]: waits for the virtio-blk disk with this serial, prints /dev/vdX.
lp_disk() {
  if ! lp_wait "${2:-30}" _lp_find_disk "$1"; then
    echo "lp_disk: no virtio-blk disk with serial $1" >&2
    return 1
  fi
  echo "$_lp_disk"
}
