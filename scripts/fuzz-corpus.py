#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (tools/fuzz), made from the test suite.

usage: fuzz-corpus.py OUT_DIR

Writes OUT_DIR/<target>/ for each target:
  moe-fuzz-ir               every MLIR test file without StableHLO, split at `// -----`
  moe-fuzz-stablehlo        the StableHLO test programs, split the same way
  moe-fuzz-onnx             the Hugging Face exports and every model of
                            moe_reference.onnx_models (good and bad)
  moe-fuzz-npy              arrays of every supported type, rank and a few edge shapes
  moe-fuzz-artifact-inputs  artifact signatures followed by matching .npy inputs
test/Fuzz/replay.test replays them (and test/Fuzz/regressions) in every build.
"""
import io
import os
import pathlib
import shutil
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))


def split_mlir(path):
    return [chunk for chunk in path.read_text().split("// -----") if chunk.strip()]


def write(directory, name, data):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def mlir_seeds(out):
    # Past findings are replayed from test/Fuzz/regressions as they are.
    files = sorted(p for p in (ROOT / "test").rglob("*.mlir") if not {"Output", "regressions"} & set(p.parts))
    for path in files:
        for i, chunk in enumerate(split_mlir(path)):
            target = "moe-fuzz-stablehlo" if "stablehlo." in chunk else "moe-fuzz-ir"
            write(out / target, f"{path.parent.name}_{path.stem}_{i}.mlir", chunk)


def onnx_seeds(out, work):
    from moe_reference import onnx_models

    work.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "test" / "Onnx" / "Inputs" / "hf").glob("*.onnx")):
        write(out / "moe-fuzz-onnx", path.name, path.read_bytes())
    for name in onnx_models.ALL + onnx_models.BAD:
        (onnx_models.bad_model if name in onnx_models.BAD else onnx_models.build)(name, str(work))
    for path in sorted(work.glob("*.onnx")):
        write(out / "moe-fuzz-onnx", path.name, path.read_bytes())
    shutil.rmtree(work)


def array_seeds():
    rng = np.random.default_rng(0)
    yield "f32_2x3", rng.standard_normal((2, 3)).astype(np.float32)
    yield "f64_4", rng.standard_normal(4)
    yield "f16_3x2x2", rng.standard_normal((3, 2, 2)).astype(np.float16)
    yield "bf16_bits_5", rng.integers(0, 65535, 5).astype(np.uint16)
    yield "i64_2x2", rng.integers(-9, 9, (2, 2)).astype(np.int64)
    yield "i32_7", rng.integers(-9, 9, 7).astype(np.int32)
    yield "f32_scalar", np.float32(1.5)
    yield "f32_0x4", np.zeros((0, 4), np.float32)


def npy_seeds(out):
    for name, array in array_seeds():
        write(out / "moe-fuzz-npy", name + ".npy", npy_bytes(array))


def artifact_seeds(out):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    ids = rng.integers(0, 4, (3, 2)).astype(np.int32)
    static = "target cpu\nentry layer\ninput x f32 3x8\ninput ids i32 3x2\noutput y f32 3x8\n"
    dynamic = "target gpu sm_90\nentry layer\ninput x f32 ?x8\ninput ids i32 ?x2\noutput y bf16 ?x8\n"
    for name, text in [("static", static), ("dynamic", dynamic)]:
        data = text.encode() + b"\n--\n" + npy_bytes(x) + b"\n--\n" + npy_bytes(ids)
        write(out / "moe-fuzz-artifact-inputs", name + ".txt", data)
    write(out / "moe-fuzz-artifact-inputs", "scalar.txt", "target cpu\nentry f\ninput s f64 scalar\noutput r i64 2x2\n")


def main():
    out = pathlib.Path(sys.argv[1])
    mlir_seeds(out)
    onnx_seeds(out, out / ".onnx-work")
    npy_seeds(out)
    artifact_seeds(out)
    for target in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        print(f"{target.name}: {len(list(target.iterdir()))} seeds")


if __name__ == "__main__":
    main()
