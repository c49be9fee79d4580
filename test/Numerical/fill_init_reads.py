# A parallel linalg.generic that adds into a zero-filled init, feeding a
# consumer with more loops (the shape a per-row gate written as an einsum,
# then contracted, takes), compiled by moe-run and compared with numpy
# float64 (rel err <= 1e-5). Upstream elementwise fusion alone re-adds the
# init on every iteration of the consumer's extra loop (results ~20x off);
# moe-fill-init-reads, run before it in moe-cpu-pipeline, makes it exact.
# RUN: %moe_python %s %t

import os
import subprocess
import sys

import numpy as np

PROGRAM = """
#p3 = affine_map<(t, e, f) -> (t, e, f)>
#g3 = affine_map<(t, e, f) -> (t, e)>
#a4 = affine_map<(t, h, e, f) -> (t, e, f)>
#w4 = affine_map<(t, h, e, f) -> (e, f, h)>
#o4 = affine_map<(t, h, e, f) -> (t, h)>
func.func @gated(%a: tensor<16x8x12xf32>, %g: tensor<16x8xf32>, %w: tensor<8x12x32xf32>) -> tensor<16x32xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x8x12xf32>
  %z = linalg.fill ins(%c0 : f32) outs(%e : tensor<16x8x12xf32>) -> tensor<16x8x12xf32>
  %gated = linalg.generic {indexing_maps = [#p3, #g3, #p3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%a, %g : tensor<16x8x12xf32>, tensor<16x8xf32>) outs(%z : tensor<16x8x12xf32>) {
  ^bb0(%x: f32, %y: f32, %out: f32):
    %m = arith.mulf %x, %y : f32
    %s = arith.addf %out, %m : f32
    linalg.yield %s : f32
  } -> tensor<16x8x12xf32>
  %e2 = tensor.empty() : tensor<16x32xf32>
  %z2 = linalg.fill ins(%c0 : f32) outs(%e2 : tensor<16x32xf32>) -> tensor<16x32xf32>
  %y = linalg.generic {indexing_maps = [#a4, #w4, #o4], iterator_types = ["parallel", "parallel", "reduction", "reduction"]}
      ins(%gated, %w : tensor<16x8x12xf32>, tensor<8x12x32xf32>) outs(%z2 : tensor<16x32xf32>) {
  ^bb0(%x: f32, %v: f32, %out: f32):
    %m = arith.mulf %x, %v : f32
    %s = arith.addf %out, %m : f32
    linalg.yield %s : f32
  } -> tensor<16x32xf32>
  return %y : tensor<16x32xf32>
}
"""


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(7)
    a = rng.standard_normal((16, 8, 12)).astype(np.float32)
    g = rng.standard_normal((16, 8)).astype(np.float32)
    w = rng.standard_normal((8, 12, 32)).astype(np.float32)
    want = np.einsum("tef,efh->th", a.astype(np.float64) * g[:, :, None], w)
    path = os.path.join(out_dir, "gated.mlir")
    with open(path, "w") as f:
        f.write(PROGRAM)
    args = []
    for name, x in (("a", a), ("g", g), ("w", w)):
        np.save(os.path.join(out_dir, name + ".npy"), x)
        args += ["--input", os.path.join(out_dir, name + ".npy")]
    subprocess.run([os.environ["MOE_RUN"], path, *args, "--output-dir", out_dir], check=True, capture_output=True)
    got = np.load(os.path.join(out_dir, "result_0.npy")).astype(np.float64)
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"{'ok  ' if err <= 1e-5 else 'FAIL'} gated einsum then contraction: rel err {err:.2e} (tol 1e-5)")
    if err > 1e-5:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
