"""Writes .npy files whose headers lie, into the directory given: a shape
whose byte size overflows, a size too large for int64, a negative size."""

import os
import struct
import sys


def write(path, shape_text, payload=b""):
    header = ("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % shape_text).encode()
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload)


out = sys.argv[1]
write(os.path.join(out, "overflow.npy"), "288230376151711744, 64")
write(os.path.join(out, "huge.npy"), "99999999999999999999999, 4")
write(os.path.join(out, "negative.npy"), "-4,")
