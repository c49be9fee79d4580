"""Calling artifacts: no copies (data pointers checked), outputs of the
inputs' kind, bound weights, and a clear ArtifactCallError for every
argument that does not match the signature; GPU artifacts load and refuse
host arrays clearly where no GPU is."""

import numpy as np
import pytest

import moe_compiler as mc
from moe_compiler import _dlpack
from conftest import layer_operands

TOL = 1e-5


def test_numpy_pointers_and_out(layer_artifact):
    ops, y = layer_operands(7)
    for a in ops:  # NumPy arrays are passed by pointer
        assert _dlpack.view(a).data == a.ctypes.data
    out = np.empty((7, 64), np.float32), np.empty((7, 8), np.float32)
    got = layer_artifact(*ops, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    assert np.abs(out[0] - y).max() < TOL


def test_torch_zero_copy(layer_mlir):
    torch = pytest.importorskip("torch")
    art = mc.compile(layer_mlir, cache_dir="")
    ops, y = layer_operands(5, seed=2)
    tensors = [torch.from_numpy(a) for a in ops]
    for t, a in zip(tensors, ops):
        assert _dlpack.view(t).data == t.data_ptr() == a.ctypes.data
    got, logits = art(*tensors)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and logits.shape == (5, 8)
    assert (got.numpy() - y).__abs__().max() < TOL
    out = torch.empty(5, 64), torch.empty(5, 8)
    got2 = art(*tensors, out=out)
    assert got2[0].data_ptr() == out[0].data_ptr()
    # Weights bound once: the same tensors, not copies.
    layer = art.bind(*tensors[1:])
    assert all(layer._bound[i + 1] is t for i, t in enumerate(tensors[1:]))
    assert torch.equal(layer(tensors[0])[0], got)


def test_jax_arrays(layer_artifact):
    jnp = pytest.importorskip("jax.numpy")
    ops, y = layer_operands(6, seed=3)
    got, _ = layer_artifact(*[jnp.asarray(a) for a in ops])
    assert type(got).__module__.startswith("jax")
    assert np.abs(np.asarray(got) - y).max() < TOL


def test_strided_inputs_copied(layer_artifact):
    """A transposed or sliced input is made contiguous (one copy); the result
    is the same as with contiguous inputs."""
    torch = pytest.importorskip("torch")
    ops, y = layer_operands(6, seed=4)
    strided = np.asfortranarray(ops[0])
    assert not strided.flags.c_contiguous
    assert np.array_equal(layer_artifact(strided, *ops[1:])[0], layer_artifact(*ops)[0])
    t = torch.from_numpy(np.ascontiguousarray(ops[0].T)).T  # a transposed view
    assert not t.is_contiguous()
    got = layer_artifact(t, *[torch.from_numpy(o) for o in ops[1:]])[0]
    assert np.abs(got.numpy() - y).max() < TOL


def test_python_numbers_and_lists(layer_artifact):
    ops, y = layer_operands(2, seed=5)
    got = layer_artifact(ops[0].tolist(), *ops[1:])[0]
    assert np.abs(got - y).max() < TOL


def test_empty_batch(layer_artifact):
    ops, _ = layer_operands(1)
    got, logits = layer_artifact(np.zeros((0, 64), np.float32), *ops[1:])
    assert got.shape == (0, 64) and logits.shape == (0, 8)


def test_call_errors(layer_artifact):
    ops, _ = layer_operands(4)
    x, weights = ops[0], ops[1:]
    cases = {
        "expected f32, got float64": lambda: layer_artifact(x.astype(np.float64), *weights),
        "takes 4 inputs, got 2": lambda: layer_artifact(x, weights[0]),
        "expected rank 2": lambda: layer_artifact(x[None], *weights),
        "expected shape [8, 64]": lambda: layer_artifact(x, weights[0][:4], *weights[1:]),
        "str is not an array": lambda: layer_artifact("x", *weights),
        "output result0: not C-contiguous": lambda: layer_artifact(
            x, *weights, out=(np.empty((64, 4), np.float32).T, np.empty((4, 8), np.float32))),
        "out: layer has 2 outputs, got 1": lambda: layer_artifact(x, *weights, out=np.empty((4, 64), np.float32)),
        "output result0: expected shape [4, 64]": lambda: layer_artifact(
            x, *weights, out=(np.empty((5, 64), np.float32), np.empty((4, 8), np.float32))),
        "no input named 'w'": lambda: layer_artifact.bind(w=weights[0]),
    }
    for expected, call in cases.items():
        with pytest.raises(mc.ArtifactCallError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            call()


def test_load_errors(tmp_path):
    with pytest.raises(mc.ArtifactLoadError, match="cannot load"):
        mc.load(tmp_path / "missing.so")
    not_artifact = tmp_path / "libnot.so"
    import shutil
    shutil.copy("/lib/x86_64-linux-gnu/libm.so.6", not_artifact)  # a shared library, not an artifact
    with pytest.raises(mc.ArtifactLoadError, match="not a moe-compile artifact"):
        mc.load(not_artifact)


def test_gpu_artifact_without_gpu(layer_mlir):
    art = mc.compile(layer_mlir, target="gpu", chip="sm_90", cache_dir="")
    assert art.signature.gpu and art.signature.target == "gpu sm_90"
    assert art.report.lowering["gpu_kernels"] > 0
    # It can run on a caller's stream (torch's current one).
    assert art._run_on_stream is not None
    with open(art.report.raw["header"]) as header:
        assert "int moe_artifact_run_on_stream(void *const *buffers, int64_t tokens, void *stream);" in header.read()
    ops, _ = layer_operands(4)
    with pytest.raises(mc.ArtifactCallError, match="takes arrays in CUDA device memory, got one on cpu:0"):
        art(*ops)


class FakeCudaArray:
    """A DLPack producer claiming CUDA memory on device 0 (the pointer is
    never dereferenced here: without a driver the runtime stops first)."""

    def __init__(self, shape, dtype_code=_dlpack.FLOAT, bits=32):
        import ctypes
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.tensor = _dlpack._ManagedTensor()
        t = self.tensor.dl_tensor
        t.data, t.device.device_type, t.device.device_id = 0x1000, _dlpack.CUDA, 0
        t.ndim, t.dtype.code, t.dtype.bits, t.dtype.lanes = len(shape), dtype_code, bits, 1
        t.shape, t.strides, t.byte_offset = self.shape, None, 0

    def __dlpack__(self, stream=None):
        import ctypes
        new = ctypes.pythonapi.PyCapsule_New
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self.tensor), b"dltensor", None)


def test_gpu_artifact_call_without_driver(layer_mlir, monkeypatch):
    import os
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("a GPU driver is present: moe-exec-gpu.test runs GPU artifacts")
    art = mc.compile(layer_mlir, target="gpu", chip="sm_90", cache_dir="")
    shapes = [s.concrete(4) for s in art.signature.inputs]
    with pytest.raises(mc.ArtifactRuntimeError, match="CUDA driver|libcuda"):
        art(*[FakeCudaArray(s) for s in shapes], out=tuple(FakeCudaArray(s.concrete(4)) for s in art.signature.outputs))
    with pytest.raises(mc.ArtifactCallError, match="expected f32, got float16"):
        art(FakeCudaArray(shapes[0], bits=16), *[FakeCudaArray(s) for s in shapes[1:]])
