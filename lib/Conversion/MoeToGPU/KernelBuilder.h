//===- KernelBuilder.h - what every grouped-GEMM kernel builder shares -*- C++ -*-===//
//
// A kernel builder replaces one matched grouped matmul (GroupedGemm.h) by a
// gpu.launch at the place of the last generic it absorbs. This base holds
// what every kernel family and its CPU emulation need: the launch and the
// tile origin, the loop over the row groups (experts, then the shared
// expert) that meet the block's rows, the fused epilogue (GLU, row scale,
// rounding) on one f32 value, and the removal of the replaced generics.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_MOETOGPU_KERNELBUILDER_H
#define LIB_CONVERSION_MOETOGPU_KERNELBUILDER_H

#include "GroupedGemm.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <array>

namespace mlir::moe::gpu_gemm {

constexpr int64_t kWarpSize = 32;

class KernelBuilder {
public:
  explicit KernelBuilder(GroupedGemm matched)
      // At the last fused generic's place: its output buffer is allocated
      // after the matmul.
      : gemm(matched), b(matched.op.getLoc(), matched.lastFused()),
        element(cast<MemRefType>(gemm.lhs.getType()).getElementType()) {}
  virtual ~KernelBuilder() = default;

  /// Builds the kernel and erases what it replaces.
  virtual void build() = 0;

protected:
  // --- small builders -----------------------------------------------------
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value f32(double v) { return arith::ConstantOp::create(b, b.getF32FloatAttr(v)); }
  Value dim(Value memref, int64_t d) { return memref::DimOp::create(b, memref, d); }
  Value ceilDiv(Value a, int64_t d) {
    return arith::DivUIOp::create(b, arith::AddIOp::create(b, a, idx(d - 1)), idx(d));
  }
  Value ult(Value a, Value c) { return arith::CmpIOp::create(b, arith::CmpIPredicate::ult, a, c); }
  Value andI(Value a, Value c) { return arith::AndIOp::create(b, a, c); }
  Value add(Value a, Value c) { return arith::AddIOp::create(b, a, c); }
  Value add(Value a, int64_t c) { return c == 0 ? a : add(a, idx(c)); }
  Value mul(Value a, int64_t c) { return arith::MulIOp::create(b, a, idx(c)); }
  Value constI32(int64_t v) { return arith::ConstantIntOp::create(b, v, 32); }
  Value constI64(int64_t v) { return arith::ConstantIntOp::create(b, v, 64); }
  Value toI32(Value index) { return arith::IndexCastOp::create(b, b.getI32Type(), index); }
  Value toI64(Value index) { return arith::IndexCastOp::create(b, b.getI64Type(), index); }

  /// Reads the sizes (rows, depth, columns, experts, row groups, output
  /// columns after the GLU) before the launch.
  void readSizes();

  /// The body of a loop or branch just built, without the terminator the
  /// builder may have added: callers yield their own values.
  static Block *bareBlock(Block *block);

  /// for i in [0, n): body(i), no results.
  void forEach(int64_t n, function_ref<void(Value)> body);

  /// The kernel's launch (grid, threads per block, dynamic shared memory
  /// bytes, workgroup buffers), the builder left inside it; the launch's own
  /// copies of the sizes (outlining passes them) and its tile's first row
  /// and column (tile sizes `tile`).
  gpu::LaunchOp openLaunch(std::array<Value, 2> grid, int64_t threads, Value sharedBytes, TypeRange workgroup,
                           std::array<Value, 3> sizes, std::array<int64_t, 2> tile);

  /// `cond ? load() : 0` without reading memory when `cond` is false.
  Value loadOrZero(Value cond, function_ref<Value()> load);

  /// offsets[i] clamped to [0, rows], as the row-experts scan reads it.
  Value offsetAt(Value i);

  /// The row groups (experts, then the shared one) whose rows meet the
  /// block's `tileRows` rows, each `body(group, iterArgs)` returning the
  /// new iterArgs; groups that do not meet them pass theirs on.
  SmallVector<Value> forEachGroup(int64_t tileRows, ValueRange init,
                                  function_ref<SmallVector<Value>(Value, ValueRange)> body);

  /// Whether tile row r (rowBase + r) belongs to `group`: a row of the
  /// batch whose expert is `group`.
  Value rowInGroup(Value r, Value group);

  /// Writes accumulator `value` at tile coordinates (r, c) when inside `out`.
  void storeIfInside(Value r, Value c, Value value);

  /// Stores the f32 epilogue value at (row, col), scaled by the row's
  /// combine weight and rounded by the fused generics' bodies when there
  /// are some.
  void storeResult(Value value, Value row, Value col);

  /// The GLU generic's body on (gate, up), stored at tile coordinates
  /// (r, c) of the activation's output when inside it.
  void storeActivatedIfInside(Value r, Value c, Value gate, Value up);

  /// The generic (and with the GLU its activation, and the intermediate
  /// buffer no one reads any more) are replaced by the kernel.
  void eraseReplaced();

  /// Erases `buffer`'s fills and allocation when nothing else uses it; its
  /// sizes, still asked for by memref.dim, are the lhs rows and its static
  /// width.
  void eraseUnusedBuffer(Value buffer);

  /// The kernel writes every element of `buffer` (rows of no expert as
  /// 0, as the generic did): a fill just before it, with nothing else
  /// touching `buffer` in between, is dead.
  void eraseDeadFills(Value buffer);

  /// accTile[r, c] += Σ_k tileA[r, k] · tileB[c, k] over the first `depth`
  /// columns of the staged tiles, in f32 (the emulated products).
  void accumulateProduct(Value r, Value c, int64_t depth);

  GroupedGemm gemm;
  ImplicitLocOpBuilder b;
  Type element;
  Operation *kernel = nullptr;
  Value rows, depth, cols, outCols, numExperts, numGroups, rowBase, colBase;
  Value tileA, tileB, accTile; // staged tiles; the emulations' accumulators
  Value threadId;
};

} // namespace mlir::moe::gpu_gemm

#endif // LIB_CONVERSION_MOETOGPU_KERNELBUILDER_H
