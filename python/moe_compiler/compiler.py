"""compile(): moe-compile on what the user holds, its report as Python data."""

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import _tools
from .artifact import Artifact, BufferSpec
from .errors import CompileError, Diagnostic
from .sources import write_source


@dataclass
class CompileReport:
    """What moe-compile reported (moe-compile --report; docs/python.md).

    layers: one dict per recognised MoE layer (experts, routing, activation,
      hidden, dtype, shared_expert, capacity, location).
    moe_ops: counts of the other moe ops (a block recognised in decomposed
      form: moe.topk, moe.dispatch, moe.grouped_matmul, ...).
    plain_ops: ops left as they were written (not part of any MoE op).
    cost: the cost model's table (FLOPs and bytes per moe op and in total,
      a dynamic token count taken as cost["tokens"]), or None.
    """
    entry: str
    target: str
    inputs: List[BufferSpec]
    outputs: List[BufferSpec]
    layers: List[dict]
    moe_ops: Dict[str, int]
    plain_ops: int
    cost: Optional[dict]
    lowering: dict
    timings_ms: Dict[str, float]
    diagnostics: List[Diagnostic] = field(default_factory=list)
    # With verify_raising: {"kept", "refused", "not_checked", "ms"}; else None.
    raising_check: Optional[dict] = None
    raw: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def from_json(data):
        def buffers(items):
            return [BufferSpec(b["name"], b["dtype"], tuple(b["shape"])) for b in items]
        return CompileReport(entry=data.get("entry", ""), target=data.get("target", ""),
                             inputs=buffers(data.get("inputs", [])), outputs=buffers(data.get("outputs", [])),
                             layers=data.get("layers", []), moe_ops=data.get("moe_ops", {}),
                             plain_ops=data.get("plain_ops", 0), cost=data.get("cost"),
                             lowering=data.get("lowering", {}), timings_ms=data.get("timings_ms", {}),
                             diagnostics=[Diagnostic.from_json(d) for d in data.get("diagnostics", [])],
                             raising_check=data.get("raising_check"), raw=data)

    def summary(self):
        """One line per recognised layer, as a user reads it."""
        lines = [f"@{self.entry} for {self.target}: {len(self.layers)} MoE layers, "
                 f"{sum(self.moe_ops.values())} other moe ops, {self.plain_ops} plain ops"]
        for i, layer in enumerate(self.layers):
            experts = " + ".join(f"{g['count']} {g['kind']}" for g in layer["experts"])
            r = layer["routing"]
            lines.append(f"  layer {i}: {experts} experts, {r['scoring']} top-{r['k']}, {layer['activation']}, "
                         f"hidden {layer['hidden']} {layer['dtype']}" + (", shared expert" if layer["shared_expert"] else ""))
        return "\n".join(lines)


_OPTIONS = {  # keyword -> moe-compile flag
    "target": "--target", "chip": "--chip", "cpu": "--cpu", "features": "--features", "gpu_format": "--gpu-format",
    "entry": "--entry", "weights_as_inputs": "--weights-as-inputs", "jobs": "--jobs", "cost_tokens": "--cost-tokens",
    "ranks": "--ranks", "placement": "--placement", "expert_profile": "--expert-profile", "replicas": "--replicas",
}
_SWITCHES = {"optimize": "--optimize", "share_layers": "--share-layers", "wgmma": "--wgmma",
             "verify_raising": "--verify-raising"}


def compile(source, example_args=None, *, output=None, cache_dir=None, dynamic_shapes=None, verbose=False,
            **options):
    """Compiles `source` into an artifact and loads it.

    source: a .onnx or .mlir path, MLIR text, an onnx.ModelProto, a JAX
      function (with `example_args`), a jax.stages.Lowered, a
      jax.export.Exported, or a torch.nn.Module (with `example_args`;
      `dynamic_shapes` as torch.onnx.export takes them).
    output: where to write the library (lib<name>.so; its header and the
      runtime go next to it); default: a temporary directory that lives as
      long as the artifact.
    cache_dir: moe-compile's cache (None: its default; "" or False: none).
    options, as moe-compile's flags: target ("cpu" or "gpu"), chip
      ("sm_90"), cpu ("host"), features, gpu_format, wgmma, optimize,
      share_layers, weights_as_inputs (ONNX: float and 8-bit integer
      initializers of at least this many bytes become inputs; 0: all), entry, jobs, cost_tokens,
      verify_raising (check every recognised MoE layer against the ops it
      was recognised in on random inputs, and compile those ops instead of
      a layer that differs; default: on when MOE_VERIFY_RAISING is set).

    Returns an Artifact whose `report` is a CompileReport. Raises
    CompileError (with the located diagnostics) when moe-compile fails and
    UnsupportedSourceError for an object it cannot take.
    """
    unknown = set(options) - set(_OPTIONS) - set(_SWITCHES)
    if unknown:
        raise TypeError(f"compile() got unknown options {sorted(unknown)}; known: {sorted(set(_OPTIONS) | set(_SWITCHES))}")
    workdir = tempfile.TemporaryDirectory(prefix="moe_compiler_")
    path, trees = write_source(source, example_args, workdir.name, dynamic_shapes)
    library = os.path.abspath(output) if output else os.path.join(workdir.name, "libartifact.so")
    report_path = os.path.join(workdir.name, "report.json")
    command = [_tools.tool("moe-compile"), path, "-o", library, f"--report={report_path}"]
    for key, value in options.items():
        if value is None:
            continue
        if key in _SWITCHES:
            command.append(f"{_SWITCHES[key]}={'true' if value else 'false'}")
        else:
            command.append(f"{_OPTIONS[key]}={value}")
    if cache_dir is False or cache_dir == "":
        command.append("--no-cache")
    elif cache_dir is not None:
        command.append(f"--cache-dir={os.fspath(cache_dir)}")
    result = subprocess.run(command, capture_output=True, text=True)
    output_text = result.stdout + result.stderr
    if verbose:
        print(output_text, end="")
    try:
        with open(report_path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = None
    if result.returncode != 0 or data is None or not data.get("ok"):
        diagnostics = [Diagnostic.from_json(d) for d in data["diagnostics"]] if data else []
        how = (f"moe-compile was killed by signal {-result.returncode}" if result.returncode < 0
               else f"moe-compile failed on {path}")
        if not diagnostics:
            how += ":\n" + output_text.strip()[-4000:]
        raise CompileError(how, diagnostics, output_text)
    report = CompileReport.from_json(data)
    artifact = Artifact(library, report, _keep=None if output else workdir)
    # Lowered/Exported sources may have dropped unused arguments: then flat calls only.
    artifact.pytrees = trees if trees and trees[0].num_leaves == len(artifact.signature.inputs) else None
    return artifact
