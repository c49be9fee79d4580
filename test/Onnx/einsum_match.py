# ONNX Einsum: each equation imported (moe_compiler.compile on the model),
# run on random non-zero inputs and compared with onnxruntime: contractions
# (an einsum-written MoE expert bank and its combine, attention scores),
# transposes, a diagonal, full and partial sums, the implicit output, the
# ellipsis with broadcasting, three operands, a dynamic leading dimension,
# f16 (accumulated in f32). Tolerances: f32 1e-5 normwise relative, f16 2e-3.
# Bad equations are located compile errors naming the node.
# RUN: %moe_python %s

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

import moe_compiler as mc

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
CASES = [
    # equation, input shapes (None: the dynamic dimension), element type
    ("th,efh->tef", [(None, 16), (4, 8, 16)], F32),         # every expert's up projection
    ("tef,ehf->teh", [(None, 4, 8), (4, 16, 8)], F32),       # and down projection
    ("te,teh->th", [(None, 4), (None, 4, 16)], F32),         # the gate-weighted combine
    ("bhqd,bhkd->bhqk", [(2, 3, 5, 8), (2, 3, 7, 8)], F32),  # attention scores
    ("ij->ji", [(3, 5)], F32),
    ("ii->i", [(4, 4)], F32),
    ("ij->", [(3, 5)], F32),
    ("ijk->ik", [(3, 4, 5)], F32),
    ("ij,jk", [(3, 4), (4, 5)], F32),                          # implicit output: ik
    ("ba,ca", [(3, 4), (5, 4)], F32),                          # implicit output sorted: bc
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (1, 5, 4, 6)], F32),  # ellipsis, broadcast
    ("i...j,j->i...", [(3, 2, 5, 4), (4,)], F32),             # ellipsis in the middle
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)], F32),
    ("th,efh->tef", [(None, 16), (4, 8, 16)], F16),
]
BAD = [
    ("ij,jk->ik", [(3, 4)], "1 operand terms|2 operand terms"),
    ("ij->ij", [(3, 4, 5)], "does not fit input 0 of rank 3"),
    ("ij,jk->iz", [(3, 4), (4, 5)], "output letter 'z' is in no input"),
    ("ij,jk->ii", [(3, 4), (4, 5)], "output letter 'i' repeats"),
    ("ij,jk->ik", [(3, 4), (5, 6)], "has size 5 where another input has 4"),
    ("i1->i", [(3, 4)], "characters other than letters"),
    ("...ij->ij", [(2, 3, 4)], "'...' dimensions the output does not keep"),
]


def model(equation, shapes, elem, name):
    inputs = [helper.make_tensor_value_info(f"x{i}", elem, ["T" if d is None else d for d in s])
              for i, s in enumerate(shapes)]
    node = helper.make_node("Einsum", [i.name for i in inputs], ["y"], name=name, equation=equation)
    graph = helper.make_graph([node], name, inputs, [helper.make_tensor_value_info("y", elem, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main():
    rng = np.random.default_rng(0)
    for n, (equation, shapes, elem) in enumerate(CASES):
        m = model(equation, shapes, elem, f"einsum_{n}")
        dtype = np.float16 if elem == F16 else np.float32
        art = mc.compile(m, cache_dir="")
        for tokens in (5, 1):
            feeds = {f"x{i}": (rng.standard_normal([tokens if d is None else d for d in s]) + 0.1).astype(dtype)
                     for i, s in enumerate(shapes)}
            (want,) = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
            got = art(*feeds.values())
            error = np.linalg.norm(got.astype(np.float64) - want) / max(np.linalg.norm(want.astype(np.float64)), 1e-30)
            tolerance = 2e-3 if elem == F16 else 1e-5
            assert got.shape == want.shape, (equation, got.shape, want.shape)
            assert error < tolerance, (equation, tokens, error)
            print(f"einsum {equation:22s} {np.dtype(dtype).name:7s} tokens={tokens}: relative error {error:.1e}")
            if not any(d is None for s in shapes for d in s):
                break
    for n, (equation, shapes, pattern) in enumerate(BAD):
        try:
            mc.compile(model(equation, shapes, F32, f"bad_{n}"), cache_dir="")
        except mc.CompileError as e:
            import re
            assert re.search(pattern, str(e)), (equation, str(e))
            assert f"node 'bad_{n}'" in str(e), str(e)
            print(f"einsum {equation:22s} rejected: {e.diagnostics[0].message}")
            continue
        raise AssertionError(f"{equation} on {shapes} compiled")


if __name__ == "__main__":
    main()
