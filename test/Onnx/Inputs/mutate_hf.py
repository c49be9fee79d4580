"""Copies an exported HF MoE model (weights inlined) with one change to its
first MoE block. Either the block is no longer the layer it looks like, so
it must stay plain ops (with a remark):

  narrow-ids   the expert-id Clip's upper bound lowered to 1: ids 2.. read
               expert 1's weights;
  up-clamp     the up half clamped to [-L/2, L] instead of [-L, L] (gpt-oss);
  norm-clamp   the renormalising sum clamped from below at 1e-3, not 1e-12
               (Ernie 4.5): a bound that changes the weights;

or a value inside it is also read outside, as blocks that return their
router scores have it (the block is still the layer; the value is kept):

  expose-scores  the router softmax (the first Softmax a TopK reads) is
                 also a graph output.

  python3 mutate_hf.py MODE in.onnx out.onnx
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

mode, source, target = sys.argv[1:4]
model = onnx.load(source)  # loads the external data too
clips = [n for n in model.graph.node if n.op_type == "Clip"]
# Constants as initializers (dynamo) or Constant nodes (TorchScript).
initializers = {i.name: i for i in model.graph.initializer}
for n in model.graph.node:
    if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
        initializers[n.output[0]] = n.attribute[0].t
if mode == "narrow-ids":
    clip, value = clips[0], np.array(1, np.int64)
    slot = 2
elif mode == "up-clamp":
    # The first Clip with both bounds on floats: the up half's.
    clip = next(c for c in clips if len(c.input) == 3 and c.input[1] in initializers and
                initializers[c.input[1]].data_type == 1)
    value = numpy_helper.to_array(initializers[clip.input[1]]) / 2
    slot = 1
elif mode == "norm-clamp":
    # The first Clip with only a float lower bound: the renormalisation's.
    clip = next(c for c in clips if len(c.input) == 2 and c.input[1] in initializers and
                initializers[c.input[1]].data_type == 1)
    value = np.array(1e-3, np.float32)
    slot = 1
elif mode == "expose-scores":
    topk_inputs = {n.input[0] for n in model.graph.node if n.op_type == "TopK"}
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax" and n.output[0] in topk_inputs)
    model.graph.output.append(onnx.helper.make_tensor_value_info(softmax.output[0], onnx.TensorProto.FLOAT, None))
    onnx.save_model(model, target)
    sys.exit(0)
else:
    sys.exit(f"unknown mode {mode}")
bound = clip.output[0] + "_mutated_bound"
model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), bound))
clip.input[slot] = bound
onnx.save_model(model, target)
