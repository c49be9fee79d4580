//===- KernelBuilder.h - what every grouped-GEMM kernel builder shares -*- C++ -*-===//
//
// A kernel builder replaces one matched grouped matmul (GroupedGemm.h) by a
// gpu.launch at the place of the last generic it absorbs. This base holds
// what every kernel family and its CPU emulation need: the launch and the
// tile origin and the row group (an expert, or the shared expert) whose
// rows the block's tile holds, the fused epilogue (GLU, row scale,
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

  /// Blocks along the rows for row tiles of `tileRows`: rows / tileRows +
  /// G + 2, enough for every range's own tiles (see scheduleRowTile).
  Value rowTileCount(int64_t tileRows);

  /// The kernel's launch (grid, threads per block, dynamic shared memory
  /// bytes, workgroup buffers), the builder left inside it; the launch's own
  /// copies of the sizes (outlining passes them), its tile's first column
  /// (tile sizes `tile`) and its rows [rowBase, rowEnd) (scheduleRowTile).
  gpu::LaunchOp openLaunch(std::array<Value, 2> grid, int64_t threads, Value sharedBytes, TypeRange workgroup,
                           std::array<Value, 3> sizes, std::array<int64_t, 2> tile);

  /// The rows [rowBase, rowEnd) of row-tile block `tile`. Tiles never
  /// straddle row groups: the rows split into the ranges [0, offsets[0]),
  /// each group's [offsets[g], offsets[g+1]) and [offsets[G], rows) (rows of
  /// no group), each range into tiles of `tileRows`; a block whose number
  /// falls on none of them gets no rows. A block then streams one
  /// expert's weights, however few rows each expert has (a 64-row tile over
  /// 16 tokens x top-8 of 128 experts would otherwise visit ~60 experts in
  /// turn on one multiprocessor), and finds its expert without a pass over
  /// all of them.
  void scheduleRowTile(Value tile, int64_t tileRows);

  /// The first row of row range `range` (0, then offsets[range - 1]).
  Value rangeStart(Value range);

  /// A buffer allocated before the launch, for the emulations: their blocks
  /// run one after another and share it (allocas in the block loops would
  /// grow the stack with every block); freed with the other buffers.
  Value scratch(MemRefType type);

  /// `cond ? load() : 0` without reading memory when `cond` is false.
  Value loadOrZero(Value cond, function_ref<Value()> load);

  /// offsets[i] clamped to [0, rows], as the row-experts scan reads it.
  Value offsetAt(Value i);

  /// The block's row group (an expert, or the shared one) when its tile
  /// has one: `body(group, init)` returns the new values; otherwise (rows
  /// of no group, or no rows) `init` passes through.
  SmallVector<Value> forTileGroup(ValueRange init, function_ref<SmallVector<Value>(Value, ValueRange)> body);

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
  Value rows, depth, cols, outCols, numExperts, numGroups, rowBase, rowEnd, colBase;
  Value tileGroup, tileHasGroup; // the tile's row group, and whether it has one
  Value tileA, tileB, accTile; // staged tiles; the emulations' accumulators
  Value threadId;
};

} // namespace mlir::moe::gpu_gemm

#endif // LIB_CONVERSION_MOETOGPU_KERNELBUILDER_H
