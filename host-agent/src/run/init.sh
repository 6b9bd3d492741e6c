#!/bin/sh
# /init of a `layerpass run` microVM. Mounts the pseudo filesystems, loads the modules
# listed in /etc/layerpass/modules, checks the kernel has what layerpass needs, then runs
# the guest agent once: it mounts the rootfs from /layerpass/plan.json (the appended,
# launch-measured part of the initramfs) and runs /layerpass/process.json in it. The host
# learns everything over virtio-serial ports; the console only shows what went wrong.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
for m in $(cat /etc/layerpass/modules 2>/dev/null); do
  insmod "/lib/modules/$m.ko" || echo "LAYERPASS-INSMOD-FAILED: $m"
done
dmesg -n 1
missing=""
grep -qw erofs /proc/filesystems || missing="$missing erofs"
grep -qw overlay /proc/filesystems || missing="$missing overlay"
[ -d /sys/module/dm_verity ] || missing="$missing dm-verity"
if [ -n "$missing" ]; then
  echo "LAYERPASS-KERNEL-MISSING:$missing"
else
  # shellcheck disable=SC2046 # the argument file holds one argument per word
  /bin/layerpass-guest run $(cat /layerpass/agent-args)
  echo "LAYERPASS-AGENT-EXIT: $?"
fi
sync
poweroff -f
