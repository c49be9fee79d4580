//===- MmaSyncKernel.cpp - grouped GEMM on mma.sync (sm_80 and later) -----===//

#include "MmaSyncKernel.h"
#include "TensorCoreTarget.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe::gpu_gemm;
using namespace mlir::moe::gpu_gemm::mma_sync;


gpu::LaunchOp MmaSyncKernel::openTiledLaunch(int64_t threads, bool sharedTiles) {
  readSizes();
  // With the GLU a block covers kTileN / 2 output columns (gate and up).
  int64_t blockCols = gemm.glu ? kTileN / 2 : kTileN;
  Value gridX = ceilDiv(outCols, blockCols);
  Value gridY = rowTileCount(kTileM);
  int64_t staticDepth = cast<MemRefType>(gemm.lhs.getType()).getDimSize(1);
  vectorStaging = !ShapedType::isDynamic(staticDepth) && staticDepth % kVector == 0;
  SmallVector<int64_t> tileShape = {kTileM, kSharedStride};
  if (vectorStaging)
    tileShape.insert(tileShape.begin(), kStages);
  auto sharedType = MemRefType::get(tileShape, element, MemRefLayoutAttrInterface(),
                                    gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup));
  SmallVector<Type> workgroup;
  if (sharedTiles)
    workgroup = {sharedType, sharedType};
  return openLaunch({gridX, gridY}, threads, Value(), workgroup, {rows, depth, cols}, {kTileM, blockCols});
}

void MmaSyncKernel::build() {
  gpu::LaunchOp launch = openTiledLaunch(kThreads, /*sharedTiles=*/true);
  tileA = launch.getWorkgroupAttributions()[0];
  tileB = launch.getWorkgroupAttributions()[1];
  Value tid = launch.getThreadIds().x;
  lane = arith::RemUIOp::create(b, tid, idx(kWarpSize));
  Value warp = arith::DivUIOp::create(b, tid, idx(kWarpSize));
  warpRow = arith::MulIOp::create(b, arith::DivUIOp::create(b, warp, idx(kWarpsN)), idx(kWarpTileM));
  warpCol = arith::MulIOp::create(b, arith::RemUIOp::create(b, warp, idx(kWarpsN)), idx(kWarpTileN));
  threadId = tid;
  SmallVector<Value> zeros(kNumAccs, f32(0.0));
  SmallVector<Value> accs = emitGroups(zeros);
  emitEpilogue(accs);
  eraseReplaced();
}

SmallVector<Value> MmaSyncKernel::emitGroups(ValueRange accs) {
  return forTileGroup(accs, [&](Value group, ValueRange iterArgs) { return emitKLoop(group, iterArgs); });
}

SmallVector<Value> MmaSyncKernel::emitKLoop(Value group, ValueRange accs) {
  if (vectorStaging)
    return emitPipelinedKLoop(group, accs);
  auto kLoop = scf::ForOp::create(b, b.getLoc(), idx(0), depth, idx(kTileK), accs);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(bareBlock(kLoop.getBody()));
  Value k0 = kLoop.getInductionVar();
  gpu::BarrierOp::create(b, b.getLoc()); // the previous step's reads are done
  emitStaging(threadId, group, k0);
  gpu::BarrierOp::create(b, b.getLoc());
  SmallVector<Value> updated(kLoop.getRegionIterArgs().begin(), kLoop.getRegionIterArgs().end());
  for (int64_t ks = 0; ks < kTileK; ks += kMmaK)
    updated = emitMmaStep(ks, updated);
  scf::YieldOp::create(b, b.getLoc(), updated);
  return SmallVector<Value>(kLoop.getResults());
}

SmallVector<Value> MmaSyncKernel::emitPipelinedKLoop(Value group, ValueRange accs) {
  Value prologue = emitVectorStaging(threadId, group, idx(0), idx(0));
  auto kLoop = scf::ForOp::create(b, b.getLoc(), idx(0), depth, idx(kTileK), accs);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(bareBlock(kLoop.getBody()));
    Value k0 = kLoop.getInductionVar();
    Value current = arith::RemUIOp::create(b, arith::DivUIOp::create(b, k0, idx(kTileK)), idx(kStages));
    Value next = arith::SubIOp::create(b, idx(kStages - 1), current);
    Value token = emitVectorStaging(threadId, group, add(k0, kTileK), next);
    nvgpu::DeviceAsyncWaitOp::create(b, token, b.getI32IntegerAttr(1));
    gpu::BarrierOp::create(b, b.getLoc());
    stage = current;
    SmallVector<Value> updated(kLoop.getRegionIterArgs().begin(), kLoop.getRegionIterArgs().end());
    for (int64_t ks = 0; ks < kTileK; ks += kMmaK)
      updated = emitMmaStep(ks, updated);
    stage = Value();
    gpu::BarrierOp::create(b, b.getLoc()); // this stage is refilled two steps on
    scf::YieldOp::create(b, b.getLoc(), updated);
  }
  // The last step's (zero) copies must land before the next row group's
  // prologue refills the stages (the wait lowers to cp.async.wait_group 0;
  // its token operand only orders it).
  nvgpu::DeviceAsyncWaitOp::create(b, prologue, b.getI32IntegerAttr(0));
  return SmallVector<Value>(kLoop.getResults());
}

Value MmaSyncKernel::copyVector(Value tile, Value stageIndex, Value r, Value c, Value src, ValueRange srcPrefix,
                                Value srcRow, Value k, Value valid) {
  Value safeRow = arith::SelectOp::create(b, valid, srcRow, idx(0));
  Value safeK = arith::SelectOp::create(b, valid, k, idx(0));
  SmallVector<Value> srcIndices(srcPrefix.begin(), srcPrefix.end());
  srcIndices.append({safeRow, safeK});
  if (stageIndex) {
    Value srcElements = arith::SelectOp::create(b, valid, idx(kVector), idx(0));
    return nvgpu::DeviceAsyncCopyOp::create(b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tile,
                                            ValueRange{stageIndex, r, c}, src, srcIndices,
                                            b.getIndexAttr(kVector), srcElements, b.getUnitAttr());
  }
  forEach(kVector, [&](Value v) {
    SmallVector<Value> at(srcPrefix.begin(), srcPrefix.end());
    at.append({safeRow, add(safeK, v)});
    Value x = loadOrZero(valid, [&] { return memref::LoadOp::create(b, src, at); });
    memref::StoreOp::create(b, x, tile, ValueRange{r, add(c, v)});
  });
  return Value();
}

Value MmaSyncKernel::emitVectorStaging(Value tid, Value group, Value k0, Value stageIndex) {
  auto tokenType = nvgpu::DeviceAsyncTokenType::get(b.getContext());
  Value isShared = gemm.shared ? arith::CmpIOp::create(b, arith::CmpIPredicate::eq, group, numExperts).getResult()
                               : Value();
  SmallVector<Value> tokens;
  for (int64_t i = 0; i < kVectorsPerThread; ++i) {
    Value flat = add(tid, i * kThreads);
    Value r = arith::DivUIOp::create(b, flat, idx(kVectorsPerRow));
    Value c = arith::MulIOp::create(b, arith::RemUIOp::create(b, flat, idx(kVectorsPerRow)), idx(kVector));
    Value k = add(k0, c);
    Value kIn = ult(k, depth); // the whole vector: depth is a multiple of kVector
    Value aValid = andI(kIn, rowInGroup(r, group));
    tokens.push_back(copyVector(tileA, stageIndex, r, c, gemm.lhs, {}, add(rowBase, r), k, aValid));
    auto [col, inside] = weightRow(r);
    Value bValid = andI(inside, kIn);
    if (!gemm.shared) {
      tokens.push_back(copyVector(tileB, stageIndex, r, c, gemm.weights, group, col, k, bValid));
      continue;
    }
    auto pick = scf::IfOp::create(b, b.getLoc(), stageIndex ? TypeRange{tokenType} : TypeRange{},
                                  isShared, true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&pick.getThenRegion().front());
    Value fromShared = copyVector(tileB, stageIndex, r, c, gemm.shared, {}, col, k, bValid);
    if (stageIndex)
      scf::YieldOp::create(b, b.getLoc(), fromShared);
    b.setInsertionPointToStart(&pick.getElseRegion().front());
    Value fromExpert = copyVector(tileB, stageIndex, r, c, gemm.weights, group, col, k, bValid);
    if (stageIndex) {
      scf::YieldOp::create(b, b.getLoc(), fromExpert);
      tokens.push_back(pick.getResult(0));
    }
  }
  if (!stageIndex)
    return Value();
  return nvgpu::DeviceAsyncCreateGroupOp::create(b, tokenType, tokens);
}

void MmaSyncKernel::emitStaging(Value tid, Value group, Value k0) {
  Value isShared = gemm.shared ? arith::CmpIOp::create(b, arith::CmpIPredicate::eq, group, numExperts).getResult()
                               : Value();
  for (int64_t i = 0; i < kTileM * kTileK / kThreads; ++i) {
    Value flat = add(tid, i * kThreads);
    Value r = arith::DivUIOp::create(b, flat, idx(kTileK));
    Value c = arith::RemUIOp::create(b, flat, idx(kTileK));
    Value k = add(k0, c);
    Value kIn = ult(k, depth);
    // lhs: row rowBase + r when it belongs to `group`.
    Value row = add(rowBase, r);
    Value aValid = andI(kIn, rowInGroup(r, group));
    Value a = loadOrZero(aValid,
                         [&] { return memref::LoadOp::create(b, gemm.lhs, ValueRange{row, k}); });
    memref::StoreOp::create(b, a, tileA, ValueRange{r, c});
    // weights: row `weightRow` of expert `group` (or the shared one).
    auto [col, inside] = weightRow(r);
    Value w = loadOrZero(andI(inside, kIn), [&]() -> Value {
      if (!gemm.shared)
        return memref::LoadOp::create(b, gemm.weights, ValueRange{group, col, k});
      auto pick = scf::IfOp::create(b, b.getLoc(), TypeRange{element}, isShared, true);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&pick.getThenRegion().front());
      scf::YieldOp::create(b, b.getLoc(),
                           memref::LoadOp::create(b, gemm.shared, ValueRange{col, k}).getResult());
      b.setInsertionPointToStart(&pick.getElseRegion().front());
      scf::YieldOp::create(b, b.getLoc(),
                           memref::LoadOp::create(b, gemm.weights, ValueRange{group, col, k}).getResult());
      return pick.getResult(0);
    });
    memref::StoreOp::create(b, w, tileB, ValueRange{r, c});
  }
}

std::pair<Value, Value> MmaSyncKernel::weightRow(Value r) {
  if (!gemm.glu) {
    Value col = add(colBase, r);
    return {col, ult(col, cols)};
  }
  Value within = arith::RemUIOp::create(b, r, idx(kWarpTileN));
  Value outCol = add(add(colBase, arith::MulIOp::create(b, arith::DivUIOp::create(b, r, idx(kWarpTileN)),
                                                        idx(kWarpTileN / 2))),
                     arith::RemUIOp::create(b, within, idx(kWarpTileN / 2)));
  Value isUp = arith::CmpIOp::create(b, arith::CmpIPredicate::uge, within, idx(kWarpTileN / 2));
  Value row = arith::SelectOp::create(b, isUp, add(outCol, outCols), outCol);
  return {row, ult(outCol, outCols)};
}

Value MmaSyncKernel::mmaOperand(Value pair) {
  if (element.isF16())
    return pair;
  Value packed = vector::BitCastOp::create(b, VectorType::get({1}, b.getI32Type()), pair);
  return vector::ExtractOp::create(b, packed, ArrayRef<int64_t>{0});
}

SmallVector<Value> MmaSyncKernel::emitMmaStep(int64_t ks, ArrayRef<Value> accs) {
  auto fragments = [&](Value tile, Value row, Value col, int64_t count) {
    auto type = VectorType::get({count, 2}, element);
    SmallVector<Value> at = {row, col};
    if (stage)
      at.insert(at.begin(), stage);
    Value frag = nvgpu::LdMatrixOp::create(b, b.getLoc(), type, tile, at,
                                           /*transpose=*/false, static_cast<uint32_t>(count));
    SmallVector<Value> regs;
    for (int64_t i = 0; i < count; ++i)
      regs.push_back(mmaOperand(vector::ExtractOp::create(b, frag, ArrayRef<int64_t>{i})));
    return regs;
  };
  SmallVector<SmallVector<Value>> aRegs, bRegs;
  Value laneRowA = arith::RemUIOp::create(b, lane, idx(16));
  Value laneColA = arith::MulIOp::create(b, arith::DivUIOp::create(b, lane, idx(16)), idx(8));
  for (int64_t mt = 0; mt < kMmaTilesM; ++mt)
    aRegs.push_back(fragments(tileA, add(add(warpRow, mt * kMmaM), laneRowA), add(laneColA, ks), 4));
  Value laneRowB = arith::RemUIOp::create(b, lane, idx(8));
  Value laneColB = arith::MulIOp::create(b, 
      arith::RemUIOp::create(b, arith::DivUIOp::create(b, lane, idx(8)), idx(2)), idx(8));
  for (int64_t nt = 0; nt < kMmaTilesN; ++nt)
    bRegs.push_back(fragments(tileB, add(add(warpCol, nt * kMmaN), laneRowB), add(laneColB, ks), 2));

  Type f32Type = b.getF32Type();
  auto resultType = LLVM::LLVMStructType::getLiteral(b.getContext(), {f32Type, f32Type, f32Type, f32Type});
  NVVM::MMATypes ptx = element.isF16() ? NVVM::MMATypes::f16 : NVVM::MMATypes::bf16;
  SmallVector<Value> out(accs.begin(), accs.end());
  for (int64_t mt = 0; mt < kMmaTilesM; ++mt)
    for (int64_t nt = 0; nt < kMmaTilesN; ++nt) {
      int64_t base = (mt * kMmaTilesN + nt) * kAccsPerMma;
      auto mma = NVVM::MmaOp::create(
          b, b.getLoc(), resultType, aRegs[mt], bRegs[nt], ArrayRef<Value>(out).slice(base, kAccsPerMma),
          ArrayRef<int64_t>{kMmaM, kMmaN, kMmaK}, std::nullopt, std::nullopt,
          std::array<NVVM::MMATypes, 2>{ptx, ptx},
          std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
      for (int64_t v = 0; v < kAccsPerMma; ++v)
        out[base + v] = LLVM::ExtractValueOp::create(b, mma.getResult(), ArrayRef<int64_t>{v});
    }
  return out;
}

std::pair<Value, Value> MmaSyncKernel::accumulatorCoord(Value laneId, int64_t v) {
  Value g = arith::DivUIOp::create(b, laneId, idx(4));
  Value t2 = arith::MulIOp::create(b, arith::RemUIOp::create(b, laneId, idx(4)), idx(2));
  return {add(g, (v / 2) * 8), add(t2, v % 2)};
}

void MmaSyncKernel::emitEpilogueFor(Value laneId, Value wr, Value wc, function_ref<Value(int64_t, int64_t, int64_t)> accAt) {
  for (int64_t mt = 0; mt < kMmaTilesM; ++mt)
    for (int64_t v = 0; v < kAccsPerMma; ++v) {
      auto [r, c] = accumulatorCoord(laneId, v);
      Value tr = add(add(wr, mt * kMmaM), r);
      if (!gemm.glu) {
        for (int64_t nt = 0; nt < kMmaTilesN; ++nt)
          storeIfInside(tr, add(add(wc, nt * kMmaN), c), accAt(mt, nt, v));
        continue;
      }
      // Gate tiles nt and up tiles nt + 2 hold the same output columns.
      Value outWarpCol = arith::DivUIOp::create(b, wc, idx(2));
      for (int64_t nt = 0; nt < kMmaTilesN / 2; ++nt)
        storeActivatedIfInside(tr, add(add(outWarpCol, nt * kMmaN), c), accAt(mt, nt, v),
                               accAt(mt, nt + kMmaTilesN / 2, v));
    }
}

void MmaSyncKernel::emitEpilogue(ArrayRef<Value> accs) {
  emitEpilogueFor(lane, warpRow, warpCol, [&](int64_t mt, int64_t nt, int64_t v) {
    return accs[(mt * kMmaTilesN + nt) * kAccsPerMma + v];
  });
}

namespace {
struct MmaSyncFamily : KernelFamily {
  StringRef name() const override { return "mma.sync"; }
  bool supports(const GroupedGemm &) const override { return true; }
  void build(const GroupedGemm &gemm) const override { MmaSyncKernel(gemm).build(); }
  void buildEmulated(const GroupedGemm &gemm) const override { buildEmulatedMmaSync(gemm); }
};
} // namespace

const KernelFamily &mlir::moe::gpu_gemm::mmaSyncFamily() {
  static const MmaSyncFamily family;
  return family;
}
