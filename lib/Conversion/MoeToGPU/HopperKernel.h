//===- HopperKernel.h - grouped GEMM on TMA + wgmma (sm_90a) -----*- C++ -*-===//
//
// The Hopper kernel (sm_90a): one warpgroup computes a kTileM x kTileN tile
// with wgmma m64n128k16; every TMA box is kBoxRows x kTileK elements (128
// bytes a row: one row of the 128-byte swizzle); the lhs tile is one box,
// the weight tile two, and kStages stages of both are in flight.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_MOETOGPU_HOPPERKERNEL_H
#define LIB_CONVERSION_MOETOGPU_HOPPERKERNEL_H

#include "KernelBuilder.h"

namespace mlir::moe::gpu_gemm {

namespace hopper {
constexpr int64_t kTileM = 64, kTileN = 128, kTileK = 64, kWgmmaK = 16;
constexpr int64_t kThreads = 128, kStages = 4, kBoxRows = 64, kElementBytes = 2;
constexpr int64_t kABytes = kTileM * kTileK * kElementBytes, kBBytes = kTileN * kTileK * kElementBytes;
constexpr int64_t kStageBytes = kABytes + kBBytes;
constexpr int64_t kAlign = 1024; // the swizzle pattern repeats every 8 rows of 128 bytes
constexpr int64_t kEpilogueStride = kTileN + 4;
constexpr int64_t kSharedBytes = kAlign + kStages * kStageBytes + kStages * 8;
static_assert(kTileK * kElementBytes == 128, "a box row is one 128-byte swizzle row");
static_assert(kTileM * kEpilogueStride * 4 <= kStages * kStageBytes, "the epilogue tile fits in the stages");
} // namespace hopper

/// The Hopper kernel; its stage schedule, accumulator layout and epilogue
/// are shared with its emulation (EmulatedKernels.cpp).
class HopperKernel : public KernelBuilder {
public:
  using KernelBuilder::KernelBuilder;
  void build() override;

protected:
  /// The grid, and the output columns a block covers (half a tile with the
  /// GLU: gate and up columns), after reading the sizes.
  struct Grid {
    Value x, y;
    int64_t blockCols;
  };
  Grid readGrid();

  /// A shared-memory pointer for byte `offset` of the aligned dynamic buffer.
  Value sharedPointer(Value offset);

  /// The byte offset of stage `stageIndex` in the ring.
  Value stageOffset(Value stageIndex) { return mul(stageIndex, hopper::kStageBytes); }

  /// The mbarrier of stage `stageIndex` (8 bytes each, after the stages).
  Value barrierPointer(Value stageIndex);

  /// The host-side TMA descriptor of `memref` (64 x 64 boxes over its last
  /// two dimensions, 1 in the others): a device pointer the runtime fills.
  Value tensorMap(Value memref);

  /// Rows of no expert are 0 (through the fused epilogue, as in the generic).
  void emitRowsOfNoExpert(int64_t blockCols);

  /// The Hopper kernels' expert: `body(group, steps)` (a K loop and an
  /// epilogue) for the tile's row group, when it has one, returns `steps`
  /// plus its K steps; the count gives the pipeline's stage and phase.
  void forTileGroupSteps(function_ref<Value(Value, Value)> body);

  /// `body` on thread 0 only (TMA issue, mbarrier setup).
  void ifLeader(function_ref<void()> body);

  /// body(r, c) for every element of the block's tile of output columns,
  /// spread over the threads (consecutive threads, consecutive columns).
  void forTileElements(int64_t width, function_ref<void(Value, Value)> body);

  /// The fused epilogue of output element (r, c) of the tile from its f32
  /// product (with the GLU: the gate and up products).
  void storeEpilogue(Value r, Value c, Value gate, Value up);

  /// Thread 0 starts K step `j` of `group` (the `step`-th overall): the
  /// stage's mbarrier expects the three boxes' bytes, then TMA loads the lhs
  /// rows and the two 64-row halves of the weight tile (plain: 128
  /// consecutive output columns; GLU: 64 gate rows and their 64 up rows).
  void issueLoads(Value step, Value j, Value group);

  /// The first weight rows of the two boxes of a weight tile: 128
  /// consecutive output columns, or with the GLU 64 gate rows and their 64
  /// up rows F further.
  SmallVector<Value> weightBoxRows();

  /// The wgmma matrix descriptor of a K-major tile at shared byte `offset`
  /// written by TMA with the 128-byte swizzle: rows of 128 bytes, 8-row
  /// groups 1024 bytes apart (PTX ISA, "Matrix Descriptor Format").
  Value matrixDescriptor(Value offset);

  /// The K loop of both Hopper forms, over numK steps of kTileK: the first
  /// kStages - 1 steps are issued up front, then step j issues step j +
  /// kStages - 1 (into the stage step j - 1 read, which every thread has
  /// finished) and consumes step j. `issue(step, j)` and `consume(step, j,
  /// iterArgs)` get the step's number overall (stage and phase) and within
  /// the expert; consume returns the new iterArgs.
  SmallVector<Value> emitStageSchedule(Value steps, Value numK, ValueRange init,
                                       function_ref<void(Value, Value)> issue,
                                       function_ref<SmallVector<Value>(Value, Value, ValueRange)> consume);

  /// One expert's K loop and epilogue; returns `steps` plus its K steps.
  Value emitHopperGroup(Value group, Value steps);

  /// The tile coordinates of thread `tid`'s wgmma accumulators, in order.
  SmallVector<std::pair<Value, Value>> fragmentCoords(Value tid);

  /// The accumulators into the shared f32 tile (wgmma's D layout: warp w
  /// holds rows 16w..16w+15; value 4j + v of lane l is row g + 8 (v / 2),
  /// column 8j + 2t + v % 2, g = l / 4, t = l % 4), then the fused epilogue
  /// for the rows of `group` only, element by element across the threads.
  void emitHopperEpilogue(Value acc, Value group);

  /// The fused epilogue of the rows of `group` from the shared f32 tile
  /// (with the GLU: gate products at column c, up products at c + 64).
  void emitGroupRows(Value group);

  Value alignedShared, epilogueTile, mapA, mapW, mapShared;
};

} // namespace mlir::moe::gpu_gemm

#endif // LIB_CONVERSION_MOETOGPU_HOPPERKERNEL_H
