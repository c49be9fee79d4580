"""Copies an exported HF MoE model (weights inlined) with its first expert-id
Clip's upper bound lowered to 1: ids 2.. then read expert 1's weights, so the
block is no longer the MoE layer it looks like and must stay plain ops.

  python3 narrow_clip.py in.onnx out.onnx
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

model = onnx.load(sys.argv[1])  # loads the external data too
clip = next(n for n in model.graph.node if n.op_type == "Clip")
bound = clip.output[0] + "_narrow_max"
model.graph.initializer.append(numpy_helper.from_array(np.array(1, np.int64), bound))
clip.input[2] = bound
onnx.save_model(model, sys.argv[2])
