#!/bin/sh
# Default /init of the layerpass test initramfs: mounts the pseudo filesystems, loads the
# modules listed in /etc/layerpass/modules (dependencies first), runs /test.sh with
# `set -e` and the helpers of /etc/layerpass/lib.sh, prints the result marker (and the
# kernel log on failure), powers off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ok=1
modules=$(cat /etc/layerpass/modules) || ok=0
for m in $modules; do
  if ! insmod "/lib/modules/$m.ko"; then
    echo "LAYERPASS-INSMOD-FAILED: $m"
    ok=0
  fi
done
# From here on the console carries only the test's output: kernel messages (which could
# split a line the host parses) go to the kernel log, printed below if the test fails.
dmesg -n 1
echo "LAYERPASS-BOOTED"
if [ "$ok" = 1 ]; then
  sh -e -c '. /etc/layerpass/lib.sh; . /test.sh'
  rc=$?
else
  rc=125
fi
if [ "$rc" = 0 ]; then
  echo "LAYERPASS-RESULT: PASS"
else
  echo "---- guest kernel log ----"
  dmesg
  echo "---- end of guest kernel log ----"
  echo "LAYERPASS-RESULT: FAIL (exit $rc)"
fi
sync
poweroff -f
