//===- EmulatedKernels.cpp - the tensor-core kernels run on the CPU -------===//
//
// moe-gpu-launch-to-loops runs a launch as loops on the CPU; these builders
// make each kernel family's launch for one thread per block that runs the
// per-thread work for every thread id in turn, with the same tiles, stage
// ring and accumulator layouts as the device kernel and scalar products in
// place of the tensor-core instructions, so every numerical test checks the
// kernel's indexing. Not exercised: ldmatrix, mma.sync and wgmma
// themselves, swizzling, descriptors and mbarrier phases.
//
//===----------------------------------------------------------------------===//

#include "HopperKernel.h"
#include "MmaSyncKernel.h"
#include "TensorCoreTarget.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe::gpu_gemm;

namespace {

using namespace mlir::moe::gpu_gemm::mma_sync;

class EmulatedMmaSyncKernel : public MmaSyncKernel {
public:
  using MmaSyncKernel::MmaSyncKernel;
  void build() override;

private:
  SmallVector<Value> emitKLoop(Value group, ValueRange accs) override;
  /// The warps' mma tiles as scalar loops over the staged tiles.
  void emitEmulatedProducts();
  /// The epilogue lane by lane through the accumulator layout.
  void emitEmulatedEpilogue();
};

class EmulatedHopperKernel : public HopperKernel {
public:
  using HopperKernel::HopperKernel;
  void build() override;

private:
  /// Stage `stageIndex` of a [stages, rows, cols] buffer as a 2-D view.
  Value stageOf(Value stages, Value stageIndex);
  Value emitEmulatedHopperGroup(Value group, Value steps);

  Value stagesA, stagesB; // the stage ring
};

} // namespace

void EmulatedMmaSyncKernel::build() {
  auto plain = MemRefType::get({kTileM, kSharedStride}, element);
  tileA = scratch(plain);
  tileB = scratch(plain);
  accTile = scratch(MemRefType::get({kTileM, kTileN}, b.getF32Type()));
  openTiledLaunch(/*threads=*/1, /*sharedTiles=*/false);
  forEach(kTileM, [&](Value r) {
    forEach(kTileN, [&](Value c) { memref::StoreOp::create(b, f32(0.0), accTile, ValueRange{r, c}); });
  });
  emitGroups(ValueRange{});
  emitEmulatedEpilogue();
  eraseReplaced();
}

/// Each K step: the staging for every thread id (16-byte vectors as
/// scalar copies when K allows them), then the warps' products.
SmallVector<Value> EmulatedMmaSyncKernel::emitKLoop(Value group, ValueRange) {
  auto kLoop = scf::ForOp::create(b, b.getLoc(), idx(0), depth, idx(kTileK));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(kLoop.getBody()->getTerminator());
  Value k0 = kLoop.getInductionVar();
  forEach(kThreads, [&](Value tid) {
    if (vectorStaging)
      emitVectorStaging(tid, group, k0, Value());
    else
      emitStaging(tid, group, k0);
  });
  emitEmulatedProducts();
  return {};
}

void EmulatedMmaSyncKernel::emitEmulatedProducts() {
  forEach(kWarpsM * kWarpsN, [&](Value warp) {
    Value wr = arith::MulIOp::create(b, arith::DivUIOp::create(b, warp, idx(kWarpsN)), idx(kWarpTileM));
    Value wc = arith::MulIOp::create(b, arith::RemUIOp::create(b, warp, idx(kWarpsN)), idx(kWarpTileN));
    forEach(kWarpTileM, [&](Value i) {
      forEach(kWarpTileN, [&](Value j) {
        accumulateProduct(add(wr, i), add(wc, j), kTileK);
      });
    });
  });
}

void EmulatedMmaSyncKernel::emitEmulatedEpilogue() {
  forEach(kWarpsM * kWarpsN, [&](Value warp) {
    Value wr = arith::MulIOp::create(b, arith::DivUIOp::create(b, warp, idx(kWarpsN)), idx(kWarpTileM));
    Value wc = arith::MulIOp::create(b, arith::RemUIOp::create(b, warp, idx(kWarpsN)), idx(kWarpTileN));
    forEach(kWarpSize, [&](Value laneId) {
      emitEpilogueFor(laneId, wr, wc, [&](int64_t mt, int64_t nt, int64_t v) -> Value {
        auto [r, c] = accumulatorCoord(laneId, v);
        Value tr = add(add(wr, mt * kMmaM), r), tc = add(add(wc, nt * kMmaN), c);
        return memref::LoadOp::create(b, accTile, ValueRange{tr, tc});
      });
    });
  });
}

void EmulatedHopperKernel::build() {
  Grid grid = readGrid();
  stagesA = scratch(MemRefType::get({hopper::kStages, hopper::kTileM, hopper::kTileK}, element));
  stagesB = scratch(MemRefType::get({hopper::kStages, hopper::kTileN, hopper::kTileK}, element));
  accTile = scratch(MemRefType::get({hopper::kTileM, hopper::kTileN}, b.getF32Type()));
  epilogueTile = scratch(MemRefType::get({hopper::kTileM, hopper::kEpilogueStride}, b.getF32Type()));
  openLaunch({grid.x, grid.y}, /*threads=*/1, Value(), TypeRange{}, {rows, depth, cols},
             {hopper::kTileM, grid.blockCols});
  int64_t blockCols = grid.blockCols;
  forEach(hopper::kThreads, [&](Value tid) {
    threadId = tid;
    emitRowsOfNoExpert(blockCols);
  });
  forTileGroupSteps([&](Value group, Value steps) { return emitEmulatedHopperGroup(group, steps); });
  eraseReplaced();
}

Value EmulatedHopperKernel::stageOf(Value stages, Value stageIndex) {
  auto type = cast<MemRefType>(stages.getType());
  SmallVector<OpFoldResult> offsets = {stageIndex, b.getIndexAttr(0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(type.getDimSize(1)),
                                     b.getIndexAttr(type.getDimSize(2))};
  SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
  auto view = memref::SubViewOp::create(b, b.getLoc(), stages, offsets, sizes, strides);
  return memref::CollapseShapeOp::create(b, b.getLoc(), view, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
}

Value EmulatedHopperKernel::emitEmulatedHopperGroup(Value group, Value steps) {
  forEach(hopper::kTileM, [&](Value r) {
    forEach(hopper::kTileN, [&](Value c) { memref::StoreOp::create(b, f32(0.0), accTile, ValueRange{r, c}); });
  });
  Value numK = ceilDiv(depth, hopper::kTileK);
  // The same stage ring and schedule as the real kernel, the loads done at
  // once: a wrong stage number would read another step's boxes.
  auto issue = [&](Value step, Value j) {
    Value stageIndex = arith::RemUIOp::create(b, step, idx(hopper::kStages));
    Value k0 = mul(j, hopper::kTileK);
    // The boxes: zeros outside the matrix, as TMA fills them.
    auto copyBox = [&](Value stages, Value tileRow0, Value firstRow, Value numRows,
                       function_ref<Value(Value, Value)> load) {
      forEach(hopper::kBoxRows, [&](Value r) {
        forEach(hopper::kTileK, [&](Value kk) {
          Value row = add(firstRow, r), k = add(k0, kk);
          Value x = loadOrZero(andI(ult(row, numRows), ult(k, depth)), [&] { return load(row, k); });
          memref::StoreOp::create(b, x, stages, ValueRange{stageIndex, add(tileRow0, r), kk});
        });
      });
    };
    copyBox(stagesA, idx(0), rowBase, rows, [&](Value row, Value k) {
      return memref::LoadOp::create(b, gemm.lhs, ValueRange{row, k}).getResult();
    });
    Value isShared = gemm.shared ? arith::CmpIOp::create(b, arith::CmpIPredicate::eq, group, numExperts).getResult()
                                 : Value();
    for (auto [half, n] : llvm::enumerate(weightBoxRows()))
      copyBox(stagesB, idx(static_cast<int64_t>(half) * hopper::kBoxRows), n, cols, [&](Value row, Value k) -> Value {
        if (!gemm.shared)
          return memref::LoadOp::create(b, gemm.weights, ValueRange{group, row, k});
        auto pick = scf::IfOp::create(b, b.getLoc(), TypeRange{element}, isShared, true);
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(&pick.getThenRegion().front());
        scf::YieldOp::create(b, b.getLoc(), memref::LoadOp::create(b, gemm.shared, ValueRange{row, k}).getResult());
        b.setInsertionPointToStart(&pick.getElseRegion().front());
        scf::YieldOp::create(b, b.getLoc(),
                             memref::LoadOp::create(b, gemm.weights, ValueRange{group, row, k}).getResult());
        return pick.getResult(0);
      });
  };
  auto consume = [&](Value step, Value, ValueRange) -> SmallVector<Value> {
    Value stageIndex = arith::RemUIOp::create(b, step, idx(hopper::kStages));
    tileA = stageOf(stagesA, stageIndex);
    tileB = stageOf(stagesB, stageIndex);
    forEach(hopper::kTileM, [&](Value r) {
      forEach(hopper::kTileN, [&](Value c) { accumulateProduct(r, c, hopper::kTileK); });
    });
    return {};
  };
  emitStageSchedule(steps, numK, ValueRange{}, issue, consume);
  // Each thread's 64 accumulators through the D fragment layout.
  forEach(hopper::kThreads, [&](Value tid) {
    for (auto [r, c] : fragmentCoords(tid))
      memref::StoreOp::create(b, memref::LoadOp::create(b, accTile, ValueRange{r, c}).getResult(), epilogueTile,
                              ValueRange{r, c});
  });
  forEach(hopper::kThreads, [&](Value tid) {
    threadId = tid;
    emitGroupRows(group);
  });
  return add(steps, numK);
}

void mlir::moe::gpu_gemm::buildEmulatedMmaSync(const GroupedGemm &gemm) { EmulatedMmaSyncKernel(gemm).build(); }

void mlir::moe::gpu_gemm::buildEmulatedHopper(const GroupedGemm &gemm) { EmulatedHopperKernel(gemm).build(); }
