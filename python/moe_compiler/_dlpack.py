"""Reading DLPack tensors through ctypes: the data pointer, device, dtype,
shape and strides of any array that implements __dlpack__ (NumPy, PyTorch,
JAX, CuPy), without copying it and without a compiled extension."""

import ctypes

# DLDeviceType values used here.
CPU, CUDA, CUDA_HOST, CUDA_MANAGED = 1, 2, 3, 13
DEVICE_NAMES = {CPU: "cpu", CUDA: "cuda", CUDA_HOST: "cuda_host", CUDA_MANAGED: "cuda_managed"}

# (DLDataTypeCode, bits) of each type an artifact's signature names.
INT, UINT, FLOAT, BFLOAT = 0, 1, 2, 4
DTYPE_CODES = {
    "f64": (FLOAT, 64), "f32": (FLOAT, 32), "f16": (FLOAT, 16), "bf16": (BFLOAT, 16),
    "i64": (INT, 64), "i32": (INT, 32), "i8": (INT, 8),
}
CODE_NAMES = {INT: "int", UINT: "uint", FLOAT: "float", BFLOAT: "bfloat"}


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32),
                ("dtype", _DataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _ManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_is_valid.restype = ctypes.c_int
_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]


class View:
    """What a DLPack tensor holds. `capsule` keeps the producer's export alive
    (an unconsumed capsule releases it when collected); `owner` is the array."""

    def __init__(self, owner, capsule, data, device, dtype, shape, strides):
        self.owner, self.capsule = owner, capsule
        self.data, self.device, self.dtype, self.shape, self.strides = data, device, dtype, shape, strides

    @staticmethod
    def of_tensor(owner, capsule, tensor):
        return View(owner, capsule, (tensor.data or 0) + tensor.byte_offset,
                    (tensor.device.device_type, tensor.device.device_id),
                    (tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes),
                    tuple(tensor.shape[i] for i in range(tensor.ndim)),
                    None if not tensor.strides else tuple(tensor.strides[i] for i in range(tensor.ndim)))

    def is_c_contiguous(self):
        if self.strides is None or 0 in self.shape:
            return True
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.strides)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True

    def dtype_name(self):
        code, bits, lanes = self.dtype
        if code == 255:
            return str(getattr(self.owner, "dtype", "an unsupported type"))
        return f"{CODE_NAMES.get(code, f'code{code}')}{bits}" + (f"x{lanes}" if lanes != 1 else "")

    def device_name(self):
        kind, index = self.device
        return f"{DEVICE_NAMES.get(kind, f'device type {kind}')}:{index}"


_NUMPY_KINDS = {"f": FLOAT, "i": INT, "u": UINT}


def _numpy_view(array):
    """NumPy arrays are read through their array interface: NumPy's DLPack
    export refuses the bfloat16 of ml_dtypes."""
    dtype = array.dtype
    if dtype.name == "bfloat16":
        code = BFLOAT
    elif dtype.kind in _NUMPY_KINDS:
        code = _NUMPY_KINDS[dtype.kind]
    else:
        return View(array, None, 0, (CPU, 0), (255, dtype.itemsize * 8, 1), array.shape, None)
    strides = tuple(s // dtype.itemsize if s % dtype.itemsize == 0 else -1 for s in array.strides)
    return View(array, None, array.__array_interface__["data"][0], (CPU, 0), (code, dtype.itemsize * 8, 1),
                tuple(array.shape), strides)


def view(array, stream=None):
    """The DLPack view of `array`, or None when it has no __dlpack__."""
    if type(array).__module__ == "numpy" and type(array).__name__ == "ndarray":
        return _numpy_view(array)
    export = getattr(array, "__dlpack__", None)
    if export is None:
        return None
    capsule = export() if stream is None else export(stream=stream)
    if not _is_valid(capsule, b"dltensor"):
        raise TypeError(f"{type(array).__name__}.__dlpack__() did not return a DLPack capsule")
    managed = _ManagedTensor.from_address(_get_pointer(capsule, b"dltensor"))
    return View.of_tensor(array, capsule, managed.dl_tensor)
