# Every generated ONNX model (python/moe_reference/onnx_models.py: ORT MoE
# nodes with each activation, k, renormalisation, SwiGLU layout, f32/f16,
# 2-D/3-D input, logits from the graph or as an input; a two-layer
# transformer-style graph with MoE FFNs; a model with external data), and
# the Hugging Face Mixtral, Qwen2-MoE, OLMoE, Qwen3-MoE, gpt-oss and
# DeepSeek-V3 causal LMs torch.onnx exported with dynamic batch and sequence (Inputs/hf,
# scripts/export-hf-moe-models.py; three sizes each; the TorchScript exports
# against PyTorch's own logits, written next to them), and MoE layers written
# by hand in PyTorch (Inputs/torch, scripts/export-torch-moe-modules.py, both
# exporters, against PyTorch's outputs at two token counts), is
# imported with moe-translate, compiled and run by moe-run, as imported,
# after moe-optimize, and as the emulated GPU program (moe-run
# --gpu-emulation; the GPU pipeline must also produce sm_90 cubins), and
# compared with onnxruntime (CPU) on the same random inputs (the models its
# CPU kernel refuses, onnx_models.NUMPY_REFERENCE, with a float64 numpy
# MoE instead). Tolerances (normwise relative): f32 1e-5, f16 2e-3 (ORT computes
# f16 MoE with f16 intermediates).
# RUN: %moe_python %s %t

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

from moe_reference import onnx_models

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 2e-3}


class ToolFailure(Exception):
    pass


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolFailure(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def isolated(name, check):
    """Runs one model's checks; a tool that fails fails that model only, so
    one broken model does not hide the others. Returns the failure count."""
    try:
        return check()
    except ToolFailure as e:
        print(f"FAIL {name}: {e}")
        return 1


# Whole f16 LMs whose 16-bit rounding alone moves the logits further than
# TOLERANCE allows: onnxruntime itself is 1.2e-3 to 1.9e-3 from PyTorch's
# logits on deepseek_v3_f16 (three sizes), ours 1.0e-3 to 2.1e-3.
HF_TOLERANCE = {"deepseek_v3_f16.onnx": 3e-3}
# Models whose plain ops have sizes read from the data (JetMoE's Split by
# expert counts): the CPU target only.
HF_CPU_ONLY = ("jetmoe",)
HF_MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Inputs", "hf")
TORCH_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Inputs", "torch")
# Modules left as plain ops that keep NonZero (rows picked by a boolean
# mask): data-dependent sizes run on the CPU target only (docs/onnx.md).
TORCH_CPU_ONLY = ("bool_index_wrong_gate_near_miss", "softmax_clamp_near_miss", "temperature_per_token_near_miss",
                  "assign_zeros_wrong_gate_near_miss", "repeated_rows_tiled_near_miss",
                  "slot_column_swapped_near_miss", "gathered_other_scores_near_miss",
                  "batch_router_transposed_picks_near_miss", "l1_norm_logits_near_miss",
                  "cells_repeated_expert_near_miss", "cells_linear_experts_unread",
                  "assign_overlap_near_miss")
# Modules whose run is refused (import-torch.test checks the message).
TORCH_RUN_REFUSED = ("view_mismatch_shared_refused",)


def check_model(name, path, feeds, expected, input_names, out_dir, tools, more=(), gpu=True, tolerance=None):
    """Imports, optimises, compiles for the GPU and runs `path` three ways
    (imported, optimised, emulated GPU) on `feeds` and on each (feeds,
    expected) of `more`; returns how many runs differ from `expected`.
    `gpu=False` (onnx_models.CPU_ONLY) leaves out the GPU program;
    `tolerance` replaces the element type's."""
    translate, moe_run, moe_opt = tools
    runs = []
    for i, (run_feeds, run_expected) in enumerate([(feeds, expected), *more]):
        inputs = []
        for input_name in input_names:
            npy = os.path.join(out_dir, f"{name}.{i}.{input_name}.npy")
            np.save(npy, run_feeds[input_name])
            inputs += ["--input", npy]
        runs.append((inputs, run_expected))
    imported = os.path.join(out_dir, name + ".mlir")
    run([translate, "--import-onnx", path, "-o", imported])
    optimized = os.path.join(out_dir, name + ".opt.mlir")
    run([moe_opt, "--moe-optimize", imported, "-o", optimized])
    # The GPU program of the optimised module: compiled to sm_90 cubins,
    # and run with its kernels' threads one after another on the CPU.
    modes = [("imported", imported, []), ("optimized", optimized, [])]
    if gpu:
        if "gpu.binary @" not in run([moe_opt, "--moe-gpu-pipeline=chip=sm_90", optimized]):
            raise ToolFailure("moe-gpu-pipeline produced no cubin")
        modes.append(("gpu-emulation", optimized, ["--gpu-emulation"]))
    else:
        print(f"note {name}: CPU only (a result sized by the data)")
    failures = 0
    # The dynamo exporter declares some 16-bit modules' outputs f32 (PyTorch's
    # sum of a 16-bit tensor, widened and left so): compared with PyTorch's
    # 16-bit result in its precision.
    declared = onnx.load(path, load_external_data=False).graph.output[0].type.tensor_type.elem_type
    for i, (inputs, expected) in enumerate(runs):
        for mode, program, flags in modes:
            result_dir = os.path.join(out_dir, f"{name}.{i}.{mode}")
            run([moe_run, program, *inputs, *flags, "--output-dir", result_dir])
            ours = np.load(os.path.join(result_dir, "result_0.npy"))
            tol = tolerance or TOLERANCE[expected.dtype]
            widened = (ours.dtype == np.float32 and expected.dtype == np.float16 and
                       declared == onnx.TensorProto.FLOAT)
            if ours.shape != expected.shape or (ours.dtype != expected.dtype and not widened):
                print(f"FAIL {name} [{mode}]: {ours.dtype}{list(ours.shape)}, onnxruntime gives "
                      f"{expected.dtype}{list(expected.shape)}")
                failures += 1
                continue
            ref = expected.astype(np.float64)
            err = np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max()
            ok = err <= tol
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name} [{mode}]: {ours.dtype}{list(ours.shape)} "
                  f"rel err {err:.2e} (tol {tol:g})")
    return failures


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tools = tuple(os.environ[v] for v in ("MOE_TRANSLATE", "MOE_RUN", "MOE_OPT"))
    failures = 0
    # The numpy MoE itself, where ORT runs the same model: gpt-oss's SwiGLU.
    model, feeds = onnx_models.moe_model("moe_swiglu_gpt_oss", **onnx_models.MOE_CASES["moe_swiglu_gpt_oss"])
    ort_y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    err = np.abs(onnx_models.moe_numpy(model, feeds) - ort_y).max() / np.abs(ort_y).max()
    print(f"{'ok  ' if err <= 1e-5 else 'FAIL'} numpy MoE reference vs onnxruntime: rel err {err:.2e}")
    failures += err > 1e-5
    # And its QMoE dequantisation (4-bit, blocks of 16, zero points), which
    # is the reference for the widths ORT's CPU kernel refuses to mix.
    case = dict(onnx_models.QMOE_CASES["qmoe_mixed_bits_swiglu"], fc2_bits=None)
    model, feeds = onnx_models.qmoe_model("qmoe_same_bits", **case)
    ort_y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    err = np.abs(onnx_models.moe_numpy(model, feeds) - ort_y).max() / np.abs(ort_y).max()
    print(f"{'ok  ' if err <= 1e-5 else 'FAIL'} numpy QMoE reference vs onnxruntime: rel err {err:.2e}")
    failures += err > 1e-5
    for name in onnx_models.ALL:
        path, feeds = onnx_models.build(name, out_dir)
        reference_path = path.replace(".onnx", ".reference.onnx")
        if name in onnx_models.NUMPY_REFERENCE:
            model = onnx.load(path)
            expected = onnx_models.moe_numpy(model, feeds)
            input_names = [i.name for i in model.graph.input]
        else:
            session = ort.InferenceSession(reference_path if os.path.exists(reference_path) else path,
                                           providers=["CPUExecutionProvider"])
            expected = session.run(None, feeds)[0]
            input_names = [i.name for i in session.get_inputs()]
        failures += isolated(name, lambda: check_model(name, path, feeds, expected, input_names, out_dir, tools,
                                                       gpu=name not in onnx_models.CPU_ONLY))
    # Hugging Face models exported by torch.onnx (scripts/export-hf-moe-models.py):
    # whole causal LMs, token ids [batch, seq] in (any sizes), logits out,
    # weights in external data; three batch and sequence sizes each.
    # TorchScript exports come with PyTorch's logits (.reference.npz): a
    # traced loop over the experts the example hit holds in onnxruntime
    # only for inputs hitting the same experts; ours computes every input.
    for seed, file in enumerate(sorted(f for f in os.listdir(HF_MODELS) if f.endswith(".onnx"))):
        path = os.path.join(HF_MODELS, file)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        ids = session.get_inputs()[0].name
        runs = []
        reference = path[:-len(".onnx")] + ".reference.npz"
        if os.path.exists(reference):
            torch_logits = np.load(reference)
            for i in range(len(torch_logits.files) // 2):
                runs.append(({ids: torch_logits[f"ids_{i}"]}, torch_logits[f"logits_{i}"]))
            print(f"note {file}: compared with PyTorch's logits ({os.path.basename(reference)})")
        else:
            for batch, seq in ((2, 5), (1, 33), (3, 2)):
                feeds = {ids: np.random.default_rng(seed * 100 + seq).integers(0, 128, (batch, seq)).astype(np.int64)}
                runs.append((feeds, session.run(None, feeds)[0]))
        failures += isolated(file, lambda: check_model("hf_" + file[:-5], path, *runs[0], [ids], out_dir, tools,
                                                       more=runs[1:], tolerance=HF_TOLERANCE.get(file),
                                                       gpu=not file.startswith(HF_CPU_ONLY)))
    # MoE layers written by hand in PyTorch (scripts/export-torch-moe-modules.py):
    # both exporters, dynamic and static sizes, against PyTorch's outputs.
    for file in sorted(f for f in os.listdir(TORCH_MODULES) if f.endswith(".onnx")
                       and not f.startswith(TORCH_RUN_REFUSED)):
        path = os.path.join(TORCH_MODULES, file)
        reference = np.load(path[:-len(".onnx")] + ".reference.npz")
        runs = [({"x": reference[f"x_{i}"]}, reference[f"y_{i}"]) for i in range(len(reference.files) // 2)]
        failures += isolated(file, lambda: check_model("torch_" + file[:-5], path, *runs[0], ["x"], out_dir, tools,
                                                       more=runs[1:], gpu=not file.startswith(TORCH_CPU_ONLY)))
    if failures:
        sys.exit(f"{failures} comparison(s) failed (the FAIL lines above)")


main(sys.argv[1])
