"""Writes one well-formed virtio-blk request of each type as fuzz seeds.

Layout (offsets from the start of guest memory at 0x1000): descriptor table at 0,
available ring at 0x100, header at 0x400, data at 0x800, status at 0x3f0.
"""
import os
import struct

BASE = 0x1000
os.makedirs("corpus/virtio_blk_queue", exist_ok=True)
for kind, name in [(0, "read"), (1, "write"), (8, "getid"), (4, "flush"), (11, "discard")]:
    m = bytearray(0xC00)
    def desc(i, addr, length, flags, nxt):
        struct.pack_into("<QIHH", m, i * 16, addr, length, flags, nxt)
    desc(0, BASE + 0x400, 16, 1, 1)                       # header, NEXT
    desc(1, BASE + 0x800, 512, 1 if kind == 1 else 3, 2)  # data (WRITE unless OUT), NEXT
    desc(2, BASE + 0x3F0, 1, 2, 0)                        # status, WRITE
    struct.pack_into("<HHH", m, 0x100, 0, 1, 0)           # avail: flags, idx=1, ring[0]=0
    struct.pack_into("<IIQ", m, 0x400, kind, 0, 1)        # type, ioprio, sector 1
    with open(f"corpus/virtio_blk_queue/seed-{name}", "wb") as f:
        f.write(bytes(m))
