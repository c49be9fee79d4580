# ONNX Tile: each case imported (moe_compiler.compile on the model), run on
# random non-zero inputs and compared with onnxruntime, exactly (a copy):
# static shapes, a dynamic leading dimension, repeats of 1 and 0, a rank-3
# input, int64 data (torch's repeat_interleave tiles index rows); a dynamic
# dimension repeated (its size is not the token count an artifact's results
# have, so through moe-run's JIT). Bad repeats (negative, the wrong count,
# not a constant) are located compile errors naming the node.
# RUN: %moe_python %s

import os
import subprocess
import tempfile

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import moe_compiler as mc

BIN = os.environ.get("MOE_COMPILER_BIN", "build/bin")
F32, I64 = TensorProto.FLOAT, TensorProto.INT64
CASES = [
    # input shape (None: the dynamic dimension), repeats, element type
    ((3, 4), (2, 3), F32),
    ((None, 4), (1, 3), F32),
    ((2, 3, 5), (1, 2, 2), F32),
    ((3, 4), (0, 2), F32),
    ((6,), (3,), I64),
]
BAD = [
    ((3, 4), (2, -1), "repeats must be at least 0, got -1 for dim 1"),
    ((3, 4), (2,), "repeats has 1 values for an input of rank 2"),
]


def model(shape, repeats, elem, name, repeats_as_input=False):
    x = helper.make_tensor_value_info("x", elem, [d if d is not None else "T" for d in shape])
    y = helper.make_tensor_value_info("y", elem, None)
    inputs, inits = [x], []
    if repeats_as_input:
        inputs.append(helper.make_tensor_value_info("repeats", I64, [len(repeats)]))
    else:
        inits.append(numpy_helper.from_array(np.array(repeats, np.int64), "repeats"))
    node = helper.make_node("Tile", ["x", "repeats"], ["y"], name=name)
    graph = helper.make_graph([node], name, inputs, [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main():
    rng = np.random.default_rng(0)
    for n, (shape, repeats, elem) in enumerate(CASES):
        m = model(shape, repeats, elem, f"tile_{n}")
        art = mc.compile(m, cache_dir="")
        for tokens in (5, 1):
            dims = [tokens if d is None else d for d in shape]
            x = (rng.integers(-50, 50, dims) if elem == I64 else rng.standard_normal(dims) + 0.1)
            x = x.astype(np.int64 if elem == I64 else np.float32)
            (want,) = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
            got = art(x)
            assert got.shape == want.shape and np.array_equal(got, want), (shape, repeats, got.shape, want.shape)
            print(f"tile {str(dims):12s} x {str(repeats):10s} {np.dtype(x.dtype).name}: equal to onnxruntime")
            if None not in shape:
                break
    # A dynamic dimension tiled: [T, 4] -> [3 T, 2 x 4], through the JIT.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tile.onnx")
        with open(path, "wb") as f:
            f.write(model((None, 4), (3, 2), F32, "tile_dynamic").SerializeToString())
        x = (rng.standard_normal((5, 4)) + 0.1).astype(np.float32)
        np.save(os.path.join(tmp, "x.npy"), x)
        subprocess.run([f"{BIN}/moe-run", path, "--input", os.path.join(tmp, "x.npy"), "--output-dir", tmp],
                       check=True, capture_output=True)
        got = np.load(os.path.join(tmp, "result_0.npy"))
        (want,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})
        assert got.shape == (15, 8) and np.array_equal(got, want), got.shape
        print("tile [5, 4] (dynamic rows) x (3, 2) through moe-run: equal to onnxruntime")
    bad = [(model(s, r, F32, f"bad_{i}"), f"bad_{i}", p) for i, (s, r, p) in enumerate(BAD)]
    bad.append((model((3, 4), (2, 2), F32, "bad_input", repeats_as_input=True), "bad_input", "repeats"))
    for m, name, pattern in bad:
        try:
            mc.compile(m, cache_dir="")
        except mc.CompileError as e:
            assert pattern in str(e), (name, str(e))
            assert f"node '{name}'" in str(e), str(e)
            print(f"tile {name}: rejected: {e.diagnostics[0].message}")
            continue
        raise AssertionError(f"{name} compiled")


if __name__ == "__main__":
    main()
