//===- HopperKernel.cpp - grouped GEMM on TMA + wgmma (sm_90a) ------------===//

#include "HopperKernel.h"
#include "TensorCoreTarget.h"
#include "dialects/moe/MoeDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe::gpu_gemm;


Value HopperKernel::sharedPointer(Value offset) {
  return LLVM::IntToPtrOp::create(b, LLVM::LLVMPointerType::get(b.getContext(), 3),
                                  toI64(add(alignedShared, offset)));
}


Value HopperKernel::barrierPointer(Value stageIndex) {
  return sharedPointer(add(mul(stageIndex, 8), hopper::kStages * hopper::kStageBytes));
}

Value HopperKernel::tensorMap(Value memref) {
  auto unranked = UnrankedMemRefType::get(element, cast<MemRefType>(memref.getType()).getMemorySpace());
  std::string name = std::string("moeTensorMapCreate") + (element.isBF16() ? "BF16" : "F16");
  auto module = gemm.op->getParentOfType<ModuleOp>();
  auto callee = module.lookupSymbol<func::FuncOp>(name);
  if (!callee) {
    OpBuilder top = OpBuilder::atBlockBegin(module.getBody());
    callee = func::FuncOp::create(
        top, module.getLoc(), name,
        top.getFunctionType({unranked, top.getI64Type(), top.getI64Type()},
                            {LLVM::LLVMPointerType::get(b.getContext())}));
    callee.setPrivate();
  }
  Value cast = memref::CastOp::create(b, unranked, memref);
  auto call = func::CallOp::create(b, callee, ValueRange{cast, constI64(hopper::kBoxRows), constI64(hopper::kTileK)});
  call->setAttr(moe::kHostCallAttrName, b.getUnitAttr());
  return call.getResult(0);
}

HopperKernel::Grid HopperKernel::readGrid() {
  readSizes();
  int64_t blockCols = gemm.glu ? hopper::kTileN / 2 : hopper::kTileN;
  Value gridX = ceilDiv(outCols, blockCols);
  Value gridY = rowTileCount(hopper::kTileM);
  return {gridX, gridY, blockCols};
}

void HopperKernel::build() {
  Grid grid = readGrid();
  mapA = tensorMap(gemm.lhs);
  mapW = tensorMap(gemm.weights);
  if (gemm.shared)
    mapShared = tensorMap(gemm.shared);
  gpu::LaunchOp launch = openLaunch({grid.x, grid.y}, hopper::kThreads, constI32(hopper::kSharedBytes), TypeRange{},
                                    {rows, depth, cols}, {hopper::kTileM, grid.blockCols});
  threadId = launch.getThreadIds().x;

  // The stages, then one mbarrier per stage, from a 1024-byte boundary
  // (where the 128-byte swizzle pattern starts); the epilogue tile reuses
  // the stages.
  auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  Value dynamic = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), MemRefLayoutAttrInterface(), workgroup));
  Value base = memref::ExtractAlignedPointerAsIndexOp::create(b, dynamic);
  Value pad = arith::RemUIOp::create(
      b, arith::SubIOp::create(b, idx(hopper::kAlign), arith::RemUIOp::create(b, base, idx(hopper::kAlign))), idx(hopper::kAlign));
  alignedShared = add(base, pad);
  epilogueTile = memref::ViewOp::create(
      b, MemRefType::get({hopper::kTileM, hopper::kEpilogueStride}, b.getF32Type(), MemRefLayoutAttrInterface(), workgroup),
      dynamic, pad, ValueRange{});
  ifLeader([&] {
    for (int64_t s = 0; s < hopper::kStages; ++s)
      NVVM::MBarrierInitOp::create(b, barrierPointer(idx(s)), constI32(1), Value());
  });
  NVVM::FenceProxyOp::create(b, NVVM::ProxyKindAttr::get(b.getContext(), NVVM::ProxyKind::async_shared),
                             NVVM::SharedSpaceAttr::get(b.getContext(), NVVM::SharedSpace::shared_cta));
  gpu::BarrierOp::create(b, b.getLoc());

  emitRowsOfNoExpert(grid.blockCols);
  forTileGroupSteps([&](Value group, Value steps) { return emitHopperGroup(group, steps); });
  eraseReplaced();
}

void HopperKernel::emitRowsOfNoExpert(int64_t blockCols) {
  forTileElements(blockCols, [&](Value r, Value c) {
    Value row = add(rowBase, r);
    auto inRows = scf::IfOp::create(b, b.getLoc(), ult(row, rowEnd));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&inRows.getThenRegion().front());
    Value e = memref::LoadOp::create(b, gemm.rowExperts, row);
    auto none = scf::IfOp::create(b, b.getLoc(),
                                  arith::CmpIOp::create(b, arith::CmpIPredicate::slt, e, constI32(0)));
    b.setInsertionPointToStart(&none.getThenRegion().front());
    storeEpilogue(r, c, f32(0.0), f32(0.0));
  });
}

void HopperKernel::forTileGroupSteps(function_ref<Value(Value, Value)> body) {
  forTileGroup(ValueRange{idx(0)}, [&](Value group, ValueRange steps) -> SmallVector<Value> {
    return {body(group, steps[0])};
  });
}

void HopperKernel::ifLeader(function_ref<void()> body) {
  auto ifOp = scf::IfOp::create(b, b.getLoc(), arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0)));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  body();
}

void HopperKernel::forTileElements(int64_t width, function_ref<void(Value, Value)> body) {
  forEach(hopper::kTileM * width / hopper::kThreads, [&](Value i) {
    Value flat = add(threadId, mul(i, hopper::kThreads));
    body(arith::DivUIOp::create(b, flat, idx(width)), arith::RemUIOp::create(b, flat, idx(width)));
  });
}

void HopperKernel::storeEpilogue(Value r, Value c, Value gate, Value up) {
  if (gemm.glu)
    storeActivatedIfInside(r, c, gate, up);
  else
    storeIfInside(r, c, gate);
}

void HopperKernel::issueLoads(Value step, Value j, Value group) {
  Value stageIndex = arith::RemUIOp::create(b, step, idx(hopper::kStages));
  Value barrier = barrierPointer(stageIndex);
  NVVM::MBarrierArriveExpectTxOp::create(b, Type(), barrier, constI32(hopper::kStageBytes),
                                         NVVM::MemScopeKindAttr(), BoolAttr(), Value());
  Value k0 = toI32(mul(j, hopper::kTileK));
  auto load = [&](Value byteOffset, Value map, ValueRange coordinates) {
    // The shared::cluster form (PTX 8.0): without a cluster, the block's
    // own shared memory.
    Value dst = LLVM::AddrSpaceCastOp::create(b, LLVM::LLVMPointerType::get(b.getContext(), 7),
                                              sharedPointer(add(stageOffset(stageIndex), byteOffset)));
    NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(b, dst, map, coordinates, barrier, ValueRange{},
                                                           Value(), Value(), NVVM::TMALoadModeAttr(),
                                                           BoolAttr(), NVVM::CTAGroupKindAttr(), Value());
  };
  load(idx(0), mapA, {k0, toI32(rowBase)});
  for (auto [half, n] : llvm::enumerate(weightBoxRows())) {
    Value at = idx(hopper::kABytes + static_cast<int64_t>(half) * hopper::kBoxRows * hopper::kTileK * hopper::kElementBytes);
    if (!gemm.shared) {
      load(at, mapW, {k0, toI32(n), toI32(group)});
      continue;
    }
    auto pick = scf::IfOp::create(b, b.getLoc(), arith::CmpIOp::create(b, arith::CmpIPredicate::eq, group, numExperts),
                                  /*withElse=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&pick.getThenRegion().front());
    load(at, mapShared, {k0, toI32(n)});
    b.setInsertionPointToStart(&pick.getElseRegion().front());
    load(at, mapW, {k0, toI32(n), toI32(group)});
  }
}

SmallVector<Value> HopperKernel::weightBoxRows() {
  return {colBase, gemm.glu ? add(outCols, colBase) : add(colBase, hopper::kBoxRows)};
}

Value HopperKernel::matrixDescriptor(Value offset) {
  Value address = toI64(add(alignedShared, offset));
  Value start = arith::ShRUIOp::create(b, arith::AndIOp::create(b, address, constI64(0x3FFFF)), constI64(4));
  int64_t fields = (int64_t(1) << 16)                        // leading byte offset (unused when swizzled)
                   | (int64_t(hopper::kAlign >> 4) << 32)    // stride byte offset: 8 rows of 128 bytes
                   | (int64_t(1) << 62);                     // 128-byte swizzle
  return arith::OrIOp::create(b, start, constI64(fields));
}

SmallVector<Value> HopperKernel::emitStageSchedule(Value steps, Value numK, ValueRange init,
                                                   function_ref<void(Value, Value)> issue,
                                                   function_ref<SmallVector<Value>(Value, Value, ValueRange)> consume) {
  auto issueIfInside = [&](Value j) {
    auto inside = scf::IfOp::create(b, b.getLoc(), ult(j, numK));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&inside.getThenRegion().front());
    issue(add(steps, j), j);
  };
  for (int64_t j = 0; j + 1 < hopper::kStages; ++j)
    issueIfInside(idx(j));
  auto kLoop = scf::ForOp::create(b, b.getLoc(), idx(0), numK, idx(1), init);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(bareBlock(kLoop.getBody()));
  Value j = kLoop.getInductionVar();
  issueIfInside(add(j, hopper::kStages - 1));
  scf::YieldOp::create(b, b.getLoc(), consume(add(steps, j), j, kLoop.getRegionIterArgs()));
  return SmallVector<Value>(kLoop.getResults());
}

Value HopperKernel::emitHopperGroup(Value group, Value steps) {
  Value numK = ceilDiv(depth, hopper::kTileK);
  Type f32Type = b.getF32Type();
  auto accType = LLVM::LLVMStructType::getLiteral(b.getContext(),
                                                  SmallVector<Type>(hopper::kTileM * hopper::kTileN / hopper::kThreads, f32Type));
  Value zero = LLVM::ZeroOp::create(b, accType);
  auto issue = [&](Value step, Value j) { ifLeader([&] { issueLoads(step, j, group); }); };
  auto consume = [&](Value step, Value, ValueRange iterArgs) -> SmallVector<Value> {
    Value stageIndex = arith::RemUIOp::create(b, step, idx(hopper::kStages));
    Value parity = arith::RemUIOp::create(b, arith::DivUIOp::create(b, step, idx(hopper::kStages)), idx(2));
    NVVM::MBarrierTryWaitParityOp::create(b, barrierPointer(stageIndex), toI32(parity), constI32(10000000));
    NVVM::WgmmaFenceAlignedOp::create(b);
    Value descA = matrixDescriptor(stageOffset(stageIndex));
    Value descB = matrixDescriptor(add(stageOffset(stageIndex), hopper::kABytes));
    NVVM::WGMMATypes type = element.isF16() ? NVVM::WGMMATypes::f16 : NVVM::WGMMATypes::bf16;
    auto typeAttr = [&](NVVM::WGMMATypes t) { return NVVM::WGMMATypesAttr::get(b.getContext(), t); };
    auto one = NVVM::WGMMAScaleInAttr::get(b.getContext(), NVVM::WGMMAScaleIn::one);
    Value acc = iterArgs[0];
    for (int64_t kk = 0; kk < hopper::kTileK / hopper::kWgmmaK; ++kk) {
      // K slice kk starts 32 bytes further along the (swizzled) rows.
      Value advance = constI64(kk * hopper::kWgmmaK * hopper::kElementBytes >> 4);
      acc = NVVM::WgmmaMmaAsyncOp::create(
          b, accType, acc, arith::AddIOp::create(b, descA, advance), arith::AddIOp::create(b, descB, advance),
          NVVM::MMAShapeAttr::get(b.getContext(), hopper::kTileM, hopper::kTileN, hopper::kWgmmaK), typeAttr(type), typeAttr(type),
          typeAttr(NVVM::WGMMATypes::f32),
          NVVM::WGMMAScaleOutAttr::get(b.getContext(), NVVM::WGMMAScaleOut::one), one, one,
          NVVM::MMALayoutAttr::get(b.getContext(), NVVM::MMALayout::row),
          NVVM::MMALayoutAttr::get(b.getContext(), NVVM::MMALayout::col), NVVM::MMAIntOverflowAttr());
    }
    NVVM::WgmmaGroupSyncAlignedOp::create(b);
    NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(0));
    gpu::BarrierOp::create(b, b.getLoc()); // the stage is refilled next step
    return {acc};
  };
  SmallVector<Value> accs = emitStageSchedule(steps, numK, ValueRange{zero}, issue, consume);
  emitHopperEpilogue(accs[0], group);
  return add(steps, numK);
}

SmallVector<std::pair<Value, Value>> HopperKernel::fragmentCoords(Value tid) {
  Value warp = arith::DivUIOp::create(b, tid, idx(kWarpSize));
  Value laneId = arith::RemUIOp::create(b, tid, idx(kWarpSize));
  Value g = arith::DivUIOp::create(b, laneId, idx(4));
  Value t2 = mul(arith::RemUIOp::create(b, laneId, idx(4)), 2);
  Value warpRowBase = add(mul(warp, 16), g);
  SmallVector<std::pair<Value, Value>> coords;
  for (int64_t j = 0; j < hopper::kTileN / 8; ++j)
    for (int64_t v = 0; v < 4; ++v)
      coords.push_back({add(warpRowBase, (v / 2) * 8), add(t2, 8 * j + v % 2)});
  return coords;
}

void HopperKernel::emitHopperEpilogue(Value acc, Value group) {
  for (auto [i, rc] : llvm::enumerate(fragmentCoords(threadId))) {
    Value x = LLVM::ExtractValueOp::create(b, acc, ArrayRef<int64_t>{static_cast<int64_t>(i)});
    memref::StoreOp::create(b, x, epilogueTile, ValueRange{rc.first, rc.second});
  }
  gpu::BarrierOp::create(b, b.getLoc());
  emitGroupRows(group);
  // The next expert's TMA loads (async proxy) overwrite this tile.
  NVVM::FenceProxyOp::create(b, NVVM::ProxyKindAttr::get(b.getContext(), NVVM::ProxyKind::async_shared),
                             NVVM::SharedSpaceAttr::get(b.getContext(), NVVM::SharedSpace::shared_cta));
  gpu::BarrierOp::create(b, b.getLoc());
}

void HopperKernel::emitGroupRows(Value group) {
  int64_t width = gemm.glu ? hopper::kTileN / 2 : hopper::kTileN;
  forTileElements(width, [&](Value r, Value c) {
    auto inGroup = scf::IfOp::create(b, b.getLoc(), rowInGroup(r, group));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&inGroup.getThenRegion().front());
    Value gate = memref::LoadOp::create(b, epilogueTile, ValueRange{r, c});
    Value up = gemm.glu ? memref::LoadOp::create(b, epilogueTile, ValueRange{r, add(c, hopper::kTileN / 2)}).getResult()
                        : Value();
    storeEpilogue(r, c, gate, up);
  });
}

namespace {
struct HopperFamily : KernelFamily {
  StringRef name() const override { return "wgmma"; }
  /// TMA loads contiguous rows whose byte stride is a multiple of 16 (K a
  /// multiple of 8).
  bool supports(const GroupedGemm &gemm) const override {
    auto contiguous = [](Value v) { return !v || cast<MemRefType>(v.getType()).getLayout().isIdentity(); };
    int64_t depth = cast<MemRefType>(gemm.lhs.getType()).getDimSize(1);
    return !ShapedType::isDynamic(depth) && depth % 8 == 0 && contiguous(gemm.lhs) && contiguous(gemm.weights) &&
           contiguous(gemm.shared);
  }
  void build(const GroupedGemm &gemm) const override { HopperKernel(gemm).build(); }
  void buildEmulated(const GroupedGemm &gemm) const override { buildEmulatedHopper(gemm); }
};
} // namespace

const KernelFamily &mlir::moe::gpu_gemm::hopperFamily() {
  static const HopperFamily family;
  return family;
}
