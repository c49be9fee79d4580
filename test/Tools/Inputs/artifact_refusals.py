"""Calls an artifact's C API the way a careless host might: each bad call
must come back as status 2 with a reason, never as a signal.

usage: artifact_refusals.py ARTIFACT.so
"""
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1])
lib.moe_artifact_run.restype = ctypes.c_int
lib.moe_artifact_run.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64]
lib.moe_artifact_error.restype = ctypes.c_char_p
signature = lib.moe_artifact_signature
signature.restype = ctypes.c_char_p
buffers = [l for l in signature().decode().splitlines() if l.startswith(("input", "output"))]

storage = [ctypes.create_string_buffer(16) for _ in buffers]
good = (ctypes.c_void_p * len(buffers))(*[ctypes.addressof(b) for b in storage])
with_null = (ctypes.c_void_p * len(buffers))(*[ctypes.addressof(b) for b in storage])
with_null[len(buffers) - 1] = None

for label, array, tokens in [("null buffers", None, 1), ("negative tokens", good, -1),
                             ("huge tokens", good, 2**62), ("null buffer", with_null, 1)]:
    status = lib.moe_artifact_run(array, tokens)
    print(f"{label}: status {status}: {lib.moe_artifact_error().decode()}")
# A good call after refused ones runs (zero tokens: nothing is read) and clears the error.
status = lib.moe_artifact_run(good, 0)
print(f"zero tokens: status {status}, error {lib.moe_artifact_error()}")
