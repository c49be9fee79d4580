//===- MmaSyncKernel.h - grouped GEMM on mma.sync (sm_80 and later) -*- C++ -*-===//
//
// A grouped matmul (GroupedGemm.h) with bf16 or f16 operands as one tiled
// kernel that runs the products on tensor cores (mma.sync m16n8k16, sm_80
// and later):
//
//  - a block computes a kTileM x kTileN tile of `out`; its four warps
//    (2 x 2) each own a 32 x 32 sub-tile, 2 x 4 mma tiles of 16 x 8, whose
//    f32 accumulators live in registers;
//  - the block's rows lie in one row group (an expert, or the shared
//    expert), or in none (KernelBuilder::scheduleRowTile); it walks K in
//    steps of kTileK: the threads stage the lhs rows (past its rows as 0)
//    and W[e]'s tile in shared memory, then each warp loads its fragments
//    with ldmatrix and issues the mma.sync;
//  - the epilogue writes each thread's accumulators to `out` (rows past R
//    and columns past N masked). Rows of no expert get 0, as in the generic.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"): lane l,
// g = l / 4, t = l % 4; A (16 x 16, row-major) registers {0..3} hold rows
// {g, g+8, g, g+8}, columns 2t + {0, 0, 8, 8} (+0, +1); B (16 x 8, stored as
// [n][k]) registers {0, 1} hold n = g, k = 2t + {0, 8} (+0, +1); the f32
// accumulators {0, 1, 2, 3} are (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
// ldmatrix .x4 on A: lane l gives the address of row l % 16, column
// (l / 16) * 8, so matrix i lands in register i; .x2 on B: n = l % 8,
// k = ((l / 8) % 2) * 8.
//
// A gated activation that reads the result's two halves (the GLU generic of
// moe.grouped_matmul_act: act(out[:, :F]) * out[:, F:]) moves into the
// epilogue: a block then covers 32 output columns, and each warp's four
// n-tiles are 16 gate columns and the same 16 up columns, so a thread holds
// the gate and up accumulators of the same element; the f32 [R, 2F]
// intermediate is never written.
//
// Its emulation (EmulatedKernels.cpp) runs the staging for each of the 128
// thread ids, the warp tiles' products as scalar loops, and the epilogue
// through the accumulator layout above.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_MOETOGPU_MMASYNCKERNEL_H
#define LIB_CONVERSION_MOETOGPU_MMASYNCKERNEL_H

#include "KernelBuilder.h"

namespace mlir::moe::gpu_gemm {

namespace mma_sync {
constexpr int64_t kTileM = 64, kTileN = 64, kTileK = 32;
constexpr int64_t kWarpsM = 2, kWarpsN = 2;
constexpr int64_t kThreads = kWarpsM * kWarpsN * kWarpSize;
constexpr int64_t kWarpTileM = kTileM / kWarpsM, kWarpTileN = kTileN / kWarpsN;
constexpr int64_t kMmaM = 16, kMmaN = 8, kMmaK = 16;
constexpr int64_t kMmaTilesM = kWarpTileM / kMmaM, kMmaTilesN = kWarpTileN / kMmaN;
constexpr int64_t kAccsPerMma = 4;
constexpr int64_t kNumAccs = kMmaTilesM * kMmaTilesN * kAccsPerMma;
// Shared rows padded by 8 elements (16 bytes): the 8 rows one ldmatrix
// reads then start in distinct banks.
constexpr int64_t kSharedStride = kTileK + 8;

static_assert(kTileM * kTileK % kThreads == 0 && kTileN * kTileK % kThreads == 0,
              "every thread stages the same number of elements");
// With K a multiple of kVector, tiles are staged as 16-byte vectors by
// cp.async into two shared buffers (the next K step loads while the
// current one multiplies).
constexpr int64_t kVector = 8, kStages = 2;
constexpr int64_t kVectorsPerRow = kTileK / kVector;
constexpr int64_t kVectorsPerThread = kTileM * kTileK / kVector / kThreads;
static_assert(kTileM == kTileN && kTileM * kTileK % (kVector * kThreads) == 0,
              "every thread stages the same number of vectors of A and B");
} // namespace mma_sync

/// The mma.sync kernel; its tiling, staging and accumulator layout are
/// shared with its emulation (EmulatedKernels.cpp).
class MmaSyncKernel : public KernelBuilder {
public:
  using KernelBuilder::KernelBuilder;
  void build() override;

protected:
  /// Reads the sizes and opens the launch with `threads` threads a block,
  /// the two shared tiles as workgroup buffers when `sharedTiles`.
  gpu::LaunchOp openTiledLaunch(int64_t threads, bool sharedTiles);

  /// The K loop of the block's row group, when it has one; `accs` are the
  /// register accumulators (none when emulated).
  SmallVector<Value> emitGroups(ValueRange accs);

  /// The K loop of one row group: staging then the warps' mma.sync steps
  /// (cp.async double-buffered when K allows 16-byte copies); returns the
  /// updated accumulators.
  virtual SmallVector<Value> emitKLoop(Value group, ValueRange accs);

  /// The K loop with cp.async double buffering: step i multiplies stage
  /// i % 2 while the copies of step i + 1 fill the other stage. Every step
  /// commits one group (past the end its copies only write zeros into the
  /// idle stage), so waiting for all but the newest group leaves the current
  /// stage complete; the barriers keep a stage from being refilled while a
  /// warp still reads it.
  SmallVector<Value> emitPipelinedKLoop(Value group, ValueRange accs);

  /// Copies vector [c, c + kVector) of `src` row `srcRow` (a view of
  /// `srcPrefix` then (row, k)) into `tile` row r, or zeros when `valid` is
  /// false. With `stageIndex` (the real kernel) it is a cp.async of 16
  /// bytes, zero-filled by a source size of 0, returning its token; without
  /// (emulation) scalar loads and stores.
  Value copyVector(Value tile, Value stageIndex, Value r, Value c, Value src, ValueRange srcPrefix,
                   Value srcRow, Value k, Value valid);

  /// Thread `tid` stages its vectors of the lhs tile (rows of `group` only)
  /// and the weight tile for K step k0, 0 outside the matrices: into stage
  /// `stageIndex` by cp.async (returns the committed group's token), or
  /// with scalar copies when emulated (`stageIndex` null).
  Value emitVectorStaging(Value tid, Value group, Value k0, Value stageIndex);

  /// Thread `tid` copies its share of the lhs tile (rows of `group` only)
  /// and the weight tile into shared memory, 0 outside the matrices.
  void emitStaging(Value tid, Value group, Value k0);

  /// The weight row staged as row `r` of the B tile and whether it exists.
  /// Plain: column colBase + r. With the GLU, each warp column's 32 rows are
  /// 16 gate rows (output columns c) then the 16 up rows (F + c).
  std::pair<Value, Value> weightRow(Value r);

  /// Two 16-bit elements packed as the mma operand type: i32 for bf16
  /// (NVVM's bf16 mma takes packed registers), vector<2xf16> for f16.
  Value mmaOperand(Value pair);

  /// One k-step of 16 for the warp's 2 x 4 mma tiles.
  SmallVector<Value> emitMmaStep(int64_t ks, ArrayRef<Value> accs);

  /// Accumulator v of lane `laneId` in a 16 x 8 mma tile: (row, column).
  std::pair<Value, Value> accumulatorCoord(Value laneId, int64_t v);

  /// Writes the accumulator of tile element (warp tile origin + mma tile
  /// (mt, nt) + lane's element v); `accAt(mt, nt, v)` reads it.
  void emitEpilogueFor(Value laneId, Value wr, Value wc, function_ref<Value(int64_t, int64_t, int64_t)> accAt);

  /// The epilogue of this thread's register accumulators.
  void emitEpilogue(ArrayRef<Value> accs);

  bool vectorStaging = false; // K % kVector == 0: 16-byte copies
  Value stage;                // the pipelined loop's current stage
  Value lane, warpRow, warpCol;
};

} // namespace mlir::moe::gpu_gemm

#endif // LIB_CONVERSION_MOETOGPU_MMASYNCKERNEL_H
