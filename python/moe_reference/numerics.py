"""Number formats and the ranking/softmax rules of docs/design.md section 2."""

import numpy as np

F32, F16, BF16 = "f32", "f16", "bf16"


def round_to(x, dtype):
    """Rounds float64 values as the compiled code stores them: through f32."""
    x32 = np.asarray(x, dtype=np.float64).astype(np.float32)
    if dtype == F32:
        return x32.astype(np.float64)
    if dtype == F16:
        return x32.astype(np.float16).astype(np.float64)
    if dtype == BF16:
        return bf16_bits_to_f64(f32_to_bf16_bits(x32))
    raise ValueError(dtype)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even f32 -> bf16, as uint16 bit patterns."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def bf16_bits_to_f64(bits):
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)


def to_storage(x, dtype):
    """An array as moe-run reads it: f32/f16 values, bf16 as uint16 bits."""
    if dtype == F32:
        return np.asarray(x, dtype=np.float32)
    if dtype == F16:
        return np.asarray(x, dtype=np.float16)
    if dtype == BF16:
        return f32_to_bf16_bits(np.asarray(x, dtype=np.float32))
    raise ValueError(dtype)


def from_storage(a, dtype):
    if dtype == BF16:
        return bf16_bits_to_f64(a)
    return np.asarray(a, dtype=np.float64)


def rank_order(values):
    """Indices of `values` in ranking order: larger first, NaN last, ties by
    the lower index (design.md 2)."""
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    key = np.where(nan, 0.0, -v)
    return np.lexsort((np.arange(v.size), key, nan))


def softmax(z):
    """Softmax of one vector with the NaN/inf rules of design.md 2.1."""
    z = np.where(np.isnan(z), -np.inf, np.asarray(z, dtype=np.float64))
    if z.size == 0:
        return z
    m = z.max()
    if m == np.inf:
        inf = z == np.inf
        return np.where(inf, 1.0 / inf.sum(), 0.0)
    if m == -np.inf:
        return np.full(z.shape, 1.0 / z.size)
    e = np.exp(z - m)
    return e / e.sum()


def softmax_rows(z):
    return np.stack([softmax(row) for row in z]) if len(z) else np.zeros_like(z, dtype=np.float64)


def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        s = 1.0 / (1.0 + np.exp(-z))
    return np.where(np.isnan(z), 0.0, s)


def relu(z):
    z = np.asarray(z, dtype=np.float64)
    return np.where(z > 0, z, 0.0)


def gelu(x):
    from math import erf, sqrt

    verf = np.vectorize(erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + verf(x / sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x * sigmoid(x)


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "relu2": lambda x: np.maximum(x, 0.0) ** 2,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "silu": silu,
    "linear": lambda x: x,
}


def activation(kind, h):
    """moe.activation on float64 rows: gated kinds split [gate; up]."""
    if kind in ("swiglu", "geglu", "geglu_tanh"):
        f = h.shape[1] // 2
        act = {"swiglu": silu, "geglu": gelu, "geglu_tanh": gelu_tanh}[kind]
        return act(h[:, :f]) * h[:, f:]
    return ACTIVATIONS[kind](h)


MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x):
    """splitmix64 on uint64 arrays (wrapping), design.md 5.1."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def gumbel_noise(seed, sample, tokens, experts):
    t = np.arange(tokens, dtype=np.uint64)[:, None]
    e = np.arange(experts, dtype=np.uint64)[None, :]
    counter = (np.uint64(sample) << np.uint64(40)) | (t << np.uint64(16)) | e
    r = splitmix64(np.uint64(seed) ^ splitmix64(counter))
    u = ((r >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
    return (-np.log(-np.log(u))).astype(np.float32).astype(np.float64)
