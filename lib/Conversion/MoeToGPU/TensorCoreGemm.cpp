//===- TensorCoreGemm.cpp - grouped bf16/f16 GEMMs on tensor cores --------===//
//
// The grouped matmul generic of the parallel form (kGroupedGemmAttrName)
// computes out[r, n] = Σ_k lhs[r, k] · W[expert(r), n, k] in f32, one thread
// per output element. With bf16 or f16 operands this pass replaces it by one
// tiled kernel that runs the products on tensor cores (mma.sync m16n8k16,
// sm_80 and later):
//
//  - a block computes a kTileM x kTileN tile of `out`; its four warps
//    (2 x 2) each own a 32 x 32 sub-tile, 2 x 4 mma tiles of 16 x 8, whose
//    f32 accumulators live in registers;
//  - the block visits the row groups (experts, then the shared expert) whose
//    row range [offsets[e], offsets[e+1]) meets its rows; for each, it walks
//    K in steps of kTileK: the threads stage the lhs rows of that expert
//    (others as 0) and W[e]'s tile in shared memory, then each warp loads
//    its fragments with ldmatrix and issues the mma.sync;
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
// `emulate` builds the same kernel for moe-gpu-launch-to-loops: one thread
// per block runs the staging for each of the 128 thread ids, the warp tiles'
// products as scalar loops, and the epilogue through the accumulator layout
// above; only ldmatrix and mma.sync themselves are not exercised.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/ParallelLoops.h"
#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOETENSORCOREGEMM
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

constexpr int64_t kTileM = 64, kTileN = 64, kTileK = 32;
constexpr int64_t kWarpsM = 2, kWarpsN = 2, kWarpSize = 32;
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

// The Hopper kernel (sm_90a): one warpgroup computes a kTileM x kTileN tile
// with wgmma m64n128k16; every TMA box is kBoxRows x kTileK elements (128
// bytes a row: one row of the 128-byte swizzle); the lhs tile is one box,
// the weight tile two, and kStages stages of both are in flight.
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

/// The operands of one marked grouped matmul, after bufferization.
struct GroupedGemm {
  linalg::GenericOp op;
  Value lhs, rowExperts, out, weights, shared, offsets;
  /// The gated activation fused into the epilogue, or null; it writes `gluOut`.
  linalg::GenericOp glu;
  Value gluOut;
  /// The scaling of each f32 result row by its combine weight
  /// (kRowScaleAttrName) fused into the epilogue, or null; it reads
  /// `rowScales` [R] and writes `scaledOut`.
  linalg::GenericOp rowScale;
  Value rowScales, scaledOut;
  /// The rounding of the f32 result (scaled, GLU output or `out`) to the
  /// operand type fused into the epilogue, or null; it writes `roundedOut`.
  linalg::GenericOp rounding;
  Value roundedOut;

  /// The f32 buffer of the products (after the GLU), before any scaling.
  Value productOut() const { return glu ? gluOut : out; }
  /// The f32 buffer the epilogue computes into before any rounding.
  Value epilogueOut() const { return rowScale ? scaledOut : productOut(); }
  /// The last fused generic: the kernel takes its place.
  Operation *lastFused() const {
    for (linalg::GenericOp fused : {rounding, rowScale, glu, op})
      if (fused)
        return fused;
    return nullptr;
  }
};

bool isUnitStrides(memref::SubViewOp view) {
  return llvm::all_of(view.getStaticStrides(), [](int64_t s) { return s == 1; });
}

/// The GLU generic that reads `out`'s halves [R, F] (columns [0, F) and
/// [F, 2F)) elementwise and writes an f32 [R, F] buffer, when `out` has no
/// other reader: the only form this pass fuses.
linalg::GenericOp matchGlu(linalg::GenericOp gemm, Value out) {
  auto outType = cast<MemRefType>(out.getType());
  int64_t width = outType.getDimSize(1);
  if (ShapedType::isDynamic(width) || width % 2 != 0)
    return {};
  SmallVector<memref::SubViewOp> halves;
  for (Operation *user : out.getUsers()) {
    if (user == gemm || isa<linalg::FillOp, memref::DimOp>(user))
      continue;
    auto view = dyn_cast<memref::SubViewOp>(user);
    if (!view || !isUnitStrides(view) || !view->hasOneUse())
      return {};
    halves.push_back(view);
  }
  if (halves.size() != 2)
    return {};
  auto act = dyn_cast<linalg::GenericOp>(*halves[0]->getUsers().begin());
  if (!act || act.getNumDpsInputs() != 2 || act.getNumDpsInits() != 1 ||
      act.getNumParallelLoops() != 2 || act.getNumLoops() != 2 ||
      !llvm::all_of(act.getIndexingMapsArray(), [](AffineMap m) { return m.isIdentity(); }))
    return {};
  auto isHalf = [&](Value v, int64_t column) {
    auto view = v.getDefiningOp<memref::SubViewOp>();
    return view && llvm::is_contained(halves, view) &&
           view.getStaticOffsets() == ArrayRef<int64_t>{0, column} &&
           view.getStaticSizes()[1] == width / 2;
  };
  auto result = dyn_cast<MemRefType>(act.getDpsInits()[0].getType());
  Block *body = act.getBody();
  if (!isHalf(act.getDpsInputs()[0], 0) || !isHalf(act.getDpsInputs()[1], width / 2) || !result ||
      !result.getElementType().isF32() || !body->getArgument(2).use_empty() ||
      llvm::any_of(body->getOperations(), [](Operation &op) { return op.getNumRegions() > 0; }))
    return {};
  return act;
}

/// The generic that rounds `result` (f32, written by `producer`) elementwise
/// to a 16-bit float buffer, when it is `result`'s only reader: the epilogue
/// then stores the rounded value and the f32 buffer is never written.
linalg::GenericOp matchRounding(Operation *producer, Value result) {
  linalg::GenericOp rounding;
  for (Operation *user : result.getUsers()) {
    if (user == producer || isa<linalg::FillOp, memref::DimOp>(user))
      continue;
    auto generic = dyn_cast<linalg::GenericOp>(user);
    if (!generic || rounding)
      return {};
    rounding = generic;
  }
  if (!rounding || rounding.getNumDpsInputs() != 1 || rounding.getNumDpsInits() != 1 ||
      rounding.getDpsInputs()[0] != result || rounding.getNumLoops() != 2 ||
      rounding.getNumParallelLoops() != 2 ||
      !llvm::all_of(rounding.getIndexingMapsArray(), [](AffineMap m) { return m.isIdentity(); }))
    return {};
  auto roundedType = dyn_cast<MemRefType>(rounding.getDpsInits()[0].getType());
  Block *body = rounding.getBody();
  auto trunc = dyn_cast<arith::TruncFOp>(body->front());
  if (!roundedType || !(roundedType.getElementType().isF16() || roundedType.getElementType().isBF16()) ||
      body->getOperations().size() != 2 || !trunc || trunc.getIn() != body->getArgument(0) ||
      body->getTerminator()->getOperand(0) != trunc.getResult())
    return {};
  return rounding;
}

/// The row-scaling generic (kRowScaleAttrName) on `result`, written by
/// `producer`: the epilogue multiplies each row by its scale. Into another
/// buffer, it must be `result`'s only reader (the unscaled values are never
/// written); in place (bufferization reuses `result`), every other reader
/// must come after it (they read the scaled values).
linalg::GenericOp matchRowScale(Operation *producer, Value result) {
  linalg::GenericOp scale;
  for (Operation *user : result.getUsers()) {
    auto generic = dyn_cast<linalg::GenericOp>(user);
    if (generic && generic->hasAttr(moe::kRowScaleAttrName) && generic.getNumDpsInputs() == 2 &&
        generic.getNumDpsInits() == 1 && generic.getDpsInputs()[0] == result)
      scale = generic;
  }
  if (!scale || !isa<MemRefType>(scale.getDpsInputs()[1].getType()) ||
      !isa<MemRefType>(scale.getDpsInits()[0].getType()) || scale->getBlock() != producer->getBlock())
    return {};
  bool inPlace = scale.getDpsInits()[0] == result;
  for (Operation *user : result.getUsers()) {
    if (user == producer || user == scale || isa<linalg::FillOp, memref::DimOp>(user))
      continue;
    Operation *top = scale->getBlock()->findAncestorOpInBlock(*user);
    if (!inPlace || !top || !scale->isBeforeInBlock(top))
      return {};
  }
  return scale;
}

/// The buffer `op`'s body loads that is defined outside it and has `rank`.
Value capturedLoad(linalg::GenericOp op, int64_t rank) {
  Value found;
  op.getBody()->walk([&](memref::LoadOp load) {
    Value memref = load.getMemref();
    if (load.getMemRefType().getRank() == rank && !op->isAncestor(memref.getParentBlock()->getParentOp()))
      found = memref;
  });
  return found;
}

/// The operands of `op` when it is a grouped matmul this pass can run on
/// tensor cores (bf16 or f16 operands of one type), or failure.
FailureOr<GroupedGemm> matchGroupedGemm(linalg::GenericOp op) {
  if (!op->hasAttr(moe::kGroupedGemmAttrName) || op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1)
    return failure();
  GroupedGemm gemm{op, op.getDpsInputs()[0], op.getDpsInputs()[1], op.getDpsInits()[0],
                   capturedLoad(op, 3), capturedLoad(op, 2), Value()};
  auto lhsType = dyn_cast<MemRefType>(gemm.lhs.getType());
  if (!lhsType || !gemm.weights || !isa<MemRefType>(gemm.out.getType()))
    return failure();
  Type element = lhsType.getElementType();
  if (!element.isBF16() && !element.isF16())
    return failure();
  if (cast<MemRefType>(gemm.weights.getType()).getElementType() != element ||
      (gemm.shared && cast<MemRefType>(gemm.shared.getType()).getElementType() != element))
    return failure();
  // The row groups' offsets: read by the generic that wrote the row experts.
  for (Operation *user : gemm.rowExperts.getUsers()) {
    auto writer = dyn_cast<linalg::GenericOp>(user);
    if (writer && writer->hasAttr(moe::kRowExpertsAttrName) && writer.getDpsInits()[0] == gemm.rowExperts)
      gemm.offsets = capturedLoad(writer, 1);
  }
  if (!gemm.offsets)
    return failure();
  gemm.glu = matchGlu(op, gemm.out);
  if (gemm.glu)
    gemm.gluOut = gemm.glu.getDpsInits()[0];
  Operation *producer = gemm.glu ? gemm.glu.getOperation() : op.getOperation();
  gemm.rowScale = matchRowScale(producer, gemm.productOut());
  if (gemm.rowScale) {
    gemm.rowScales = gemm.rowScale.getDpsInputs()[1];
    gemm.scaledOut = gemm.rowScale.getDpsInits()[0];
    producer = gemm.rowScale;
  }
  gemm.rounding = matchRounding(producer, gemm.epilogueOut());
  if (gemm.rounding)
    gemm.roundedOut = gemm.rounding.getDpsInits()[0];
  return gemm;
}

/// Builds the kernel for one grouped matmul.
class TensorCoreKernelBuilder {
public:
  TensorCoreKernelBuilder(GroupedGemm gemm, bool emulate, bool hopper = false)
      // At the last fused generic's place: its output buffer is allocated
      // after the matmul.
      : gemm(gemm), emulate(emulate), hopper(hopper), b(gemm.op.getLoc(), gemm.lastFused()),
        element(cast<MemRefType>(gemm.lhs.getType()).getElementType()) {}

  void build() {
    if (hopper)
      return buildHopper();
    Value rows = dim(gemm.lhs, 0), depth = dim(gemm.lhs, 1), cols = dim(gemm.out, 1);
    numExperts = dim(gemm.weights, 0);
    numGroups = gemm.shared ? arith::AddIOp::create(b, numExperts, idx(1)).getResult() : numExperts;
    // With the GLU a block covers kTileN / 2 output columns (gate and up).
    outCols = gemm.glu ? dim(gemm.gluOut, 1) : cols;
    Value gridX = ceilDiv(outCols, gemm.glu ? kTileN / 2 : kTileN);
    Value gridY = arith::MaxUIOp::create(b, ceilDiv(rows, kTileM), idx(1));
    int64_t staticDepth = cast<MemRefType>(gemm.lhs.getType()).getDimSize(1);
    vectorStaging = !ShapedType::isDynamic(staticDepth) && staticDepth % kVector == 0;
    SmallVector<int64_t> tileShape = {kTileM, kSharedStride};
    if (vectorStaging)
      tileShape.insert(tileShape.begin(), kStages);
    auto sharedType = MemRefType::get(tileShape, element, MemRefLayoutAttrInterface(),
                                      gpu::AddressSpaceAttr::get(b.getContext(),
                                                                 gpu::AddressSpace::Workgroup));
    SmallVector<Type> workgroup;
    if (!emulate)
      workgroup = {sharedType, sharedType};
    gpu::LaunchOp launch = openLaunch({gridX, gridY}, emulate ? 1 : kThreads, Value(), workgroup, {rows, depth, cols},
                                      {kTileM, gemm.glu ? kTileN / 2 : kTileN});
    if (emulate) {
      auto plain = MemRefType::get({kTileM, kSharedStride}, element);
      auto scope = memref::AllocaScopeOp::create(b, b.getLoc(), TypeRange{});
      Block *scopeBody = new Block();
      scope.getBodyRegion().push_back(scopeBody);
      b.setInsertionPointToStart(scopeBody);
      tileA = memref::AllocaOp::create(b, plain);
      tileB = memref::AllocaOp::create(b, plain);
      accTile = memref::AllocaOp::create(b, MemRefType::get({kTileM, kTileN}, b.getF32Type()));
      forEach(kTileM, [&](Value r) {
        forEach(kTileN, [&](Value c) { memref::StoreOp::create(b, f32(0.0), accTile, ValueRange{r, c}); });
      });
      emitGroups(ValueRange{});
      emitEmulatedEpilogue();
      memref::AllocaScopeReturnOp::create(b, b.getLoc(), ValueRange{});
    } else {
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
    }
    eraseReplaced();
  }

private:
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

  /// The body of a loop or branch just built, without the terminator the
  /// builder may have added: callers yield their own values.
  static Block *bareBlock(Block *block) {
    if (!block->empty() && block->back().hasTrait<OpTrait::IsTerminator>())
      block->back().erase();
    return block;
  }

  /// for i in [0, n): body(i), no results.
  void forEach(int64_t n, function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b, b.getLoc(), idx(0), idx(n), idx(1));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    body(loop.getInductionVar());
  }

  /// The kernel's launch (grid, threads per block, dynamic shared memory
  /// bytes, workgroup buffers), the builder left inside it; the launch's own
  /// copies of the sizes (outlining passes them) and its tile's first row
  /// and column (tile sizes `tile`).
  gpu::LaunchOp openLaunch(std::array<Value, 2> grid, int64_t threads, Value sharedBytes, TypeRange workgroup,
                           std::array<Value, 3> sizes, std::array<int64_t, 2> tile) {
    auto launch = gpu::LaunchOp::create(b, b.getLoc(), grid[0], grid[1], idx(1), idx(threads), idx(1), idx(1),
                                        sharedBytes, Type(), ValueRange{}, workgroup);
    kernel = launch;
    Block &body = launch.getBody().front();
    b.setInsertionPointToStart(&body);
    gpu::TerminatorOp::create(b, b.getLoc());
    b.setInsertionPoint(body.getTerminator());
    std::tie(rows, depth, cols) = std::tuple(sizes[0], sizes[1], sizes[2]);
    rowBase = arith::MulIOp::create(b, launch.getBlockIds().y, idx(tile[0]));
    colBase = arith::MulIOp::create(b, launch.getBlockIds().x, idx(tile[1]));
    return launch;
  }

  /// `cond ? load() : 0` without reading memory when `cond` is false.
  Value loadOrZero(Value cond, function_ref<Value()> load) {
    auto ifOp = scf::IfOp::create(b, b.getLoc(), TypeRange{element}, cond, /*withElse=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    scf::YieldOp::create(b, b.getLoc(), load());
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, b.getLoc(), arith::ConstantOp::create(b, b.getZeroAttr(element)).getResult());
    return ifOp.getResult(0);
  }

  /// offsets[i] clamped to [0, rows], as the row-experts scan reads it.
  Value offsetAt(Value i) {
    Value v = arith::IndexCastOp::create(b, b.getIndexType(), memref::LoadOp::create(b, gemm.offsets, i));
    return arith::MinSIOp::create(b, arith::MaxSIOp::create(b, v, idx(0)), rows);
  }

  // --- the kernel ---------------------------------------------------------

  /// Loops over the row groups, running the K loop for those that meet the
  /// block's rows; `accs` are the register accumulators (none when emulated).
  SmallVector<Value> emitGroups(ValueRange accs) {
    return forEachGroup(kTileM, accs, [&](Value group, ValueRange iterArgs) { return emitKLoop(group, iterArgs); });
  }

  /// The row groups (experts, then the shared one) whose rows meet the
  /// block's `tileRows` rows, each `body(group, iterArgs)` returning the
  /// new iterArgs; groups that do not meet them pass theirs on.
  SmallVector<Value> forEachGroup(int64_t tileRows, ValueRange init,
                                  function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto groups = scf::ForOp::create(b, b.getLoc(), idx(0), numGroups, idx(1), init);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(bareBlock(groups.getBody()));
    Value group = groups.getInductionVar();
    Value lo = offsetAt(group);
    Value hi = arith::MaxSIOp::create(b, offsetAt(add(group, 1)), lo);
    Value meets = andI(andI(ult(lo, hi), ult(lo, add(rowBase, tileRows))), ult(rowBase, hi));
    auto ifOp = scf::IfOp::create(b, b.getLoc(), ValueRange(groups.getRegionIterArgs()).getTypes(), meets,
                                  /*withElse=*/true);
    b.setInsertionPointToStart(bareBlock(&ifOp.getThenRegion().front()));
    scf::YieldOp::create(b, b.getLoc(), body(group, groups.getRegionIterArgs()));
    b.setInsertionPointToStart(bareBlock(&ifOp.getElseRegion().front()));
    scf::YieldOp::create(b, b.getLoc(), groups.getRegionIterArgs());
    b.setInsertionPointToEnd(groups.getBody());
    scf::YieldOp::create(b, b.getLoc(), ifOp.getResults());
    return SmallVector<Value>(groups.getResults());
  }

  SmallVector<Value> emitKLoop(Value group, ValueRange accs) {
    if (vectorStaging && !emulate)
      return emitPipelinedKLoop(group, accs);
    auto kLoop = scf::ForOp::create(b, b.getLoc(), idx(0), depth, idx(kTileK), accs);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(bareBlock(kLoop.getBody()));
    Value k0 = kLoop.getInductionVar();
    SmallVector<Value> updated;
    if (emulate) {
      forEach(kThreads, [&](Value tid) {
        if (vectorStaging)
          emitVectorStaging(tid, group, k0, Value());
        else
          emitStaging(tid, group, k0);
      });
      emitEmulatedProducts();
    } else {
      gpu::BarrierOp::create(b, b.getLoc()); // the previous step's reads are done
      emitStaging(threadId, group, k0);
      gpu::BarrierOp::create(b, b.getLoc());
      updated.assign(kLoop.getRegionIterArgs().begin(), kLoop.getRegionIterArgs().end());
      for (int64_t ks = 0; ks < kTileK; ks += kMmaK)
        updated = emitMmaStep(ks, updated);
    }
    scf::YieldOp::create(b, b.getLoc(), updated);
    return SmallVector<Value>(kLoop.getResults());
  }

  /// The K loop with cp.async double buffering: step i multiplies stage
  /// i % 2 while the copies of step i + 1 fill the other stage. Every step
  /// commits one group (past the end its copies only write zeros into the
  /// idle stage), so waiting for all but the newest group leaves the current
  /// stage complete; the barriers keep a stage from being refilled while a
  /// warp still reads it.
  SmallVector<Value> emitPipelinedKLoop(Value group, ValueRange accs) {
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

  /// Whether tile row r (rowBase + r) belongs to `group`: a row of the
  /// batch whose expert is `group`.
  Value rowInGroup(Value r, Value group) {
    Value row = add(rowBase, r);
    auto rowIf = scf::IfOp::create(b, b.getLoc(), TypeRange{b.getI1Type()}, ult(row, rows), true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&rowIf.getThenRegion().front());
    Value e = memref::LoadOp::create(b, gemm.rowExperts, row);
    Value groupI32 = arith::IndexCastOp::create(b, b.getI32Type(), group);
    scf::YieldOp::create(b, b.getLoc(),
                         arith::CmpIOp::create(b, arith::CmpIPredicate::eq, e, groupI32).getResult());
    b.setInsertionPointToStart(&rowIf.getElseRegion().front());
    scf::YieldOp::create(b, b.getLoc(), arith::ConstantIntOp::create(b, 0, 1).getResult());
    return rowIf.getResult(0);
  }

  /// Copies vector [c, c + kVector) of `src` row `srcRow` (a view of
  /// `srcPrefix` then (row, k)) into `tile` row r, or zeros when `valid` is
  /// false. With `stageIndex` (the real kernel) it is a cp.async of 16
  /// bytes, zero-filled by a source size of 0, returning its token; without
  /// (emulation) scalar loads and stores.
  Value copyVector(Value tile, Value stageIndex, Value r, Value c, Value src, ValueRange srcPrefix,
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

  /// Thread `tid` stages its vectors of the lhs tile (rows of `group` only)
  /// and the weight tile for K step k0, 0 outside the matrices: into stage
  /// `stageIndex` by cp.async (returns the committed group's token), or
  /// with scalar copies when emulated (`stageIndex` null).
  Value emitVectorStaging(Value tid, Value group, Value k0, Value stageIndex) {
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

  /// Thread `tid` copies its share of the lhs tile (rows of `group` only)
  /// and the weight tile into shared memory, 0 outside the matrices.
  void emitStaging(Value tid, Value group, Value k0) {
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

  /// The weight row staged as row `r` of the B tile and whether it exists.
  /// Plain: column colBase + r. With the GLU, each warp column's 32 rows are
  /// 16 gate rows (output columns c) then the 16 up rows (F + c).
  std::pair<Value, Value> weightRow(Value r) {
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

  /// Two 16-bit elements packed as the mma operand type: i32 for bf16
  /// (NVVM's bf16 mma takes packed registers), vector<2xf16> for f16.
  Value mmaOperand(Value pair) {
    if (element.isF16())
      return pair;
    Value packed = vector::BitCastOp::create(b, VectorType::get({1}, b.getI32Type()), pair);
    return vector::ExtractOp::create(b, packed, ArrayRef<int64_t>{0});
  }

  /// One k-step of 16 for the warp's 2 x 4 mma tiles.
  SmallVector<Value> emitMmaStep(int64_t ks, ArrayRef<Value> accs) {
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

  /// Accumulator v of lane `laneId` in a 16 x 8 mma tile: (row, column).
  std::pair<Value, Value> accumulatorCoord(Value laneId, int64_t v) {
    Value g = arith::DivUIOp::create(b, laneId, idx(4));
    Value t2 = arith::MulIOp::create(b, arith::RemUIOp::create(b, laneId, idx(4)), idx(2));
    return {add(g, (v / 2) * 8), add(t2, v % 2)};
  }

  /// Writes accumulator `value` at tile coordinates (r, c) when inside `out`.
  void storeIfInside(Value r, Value c, Value value) {
    Value row = add(rowBase, r), col = add(colBase, c);
    auto inside = scf::IfOp::create(b, b.getLoc(), andI(ult(row, rows), ult(col, cols)));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&inside.getThenRegion().front());
    storeResult(value, row, col);
  }

  /// Stores the f32 epilogue value at (row, col), scaled by the row's
  /// combine weight and rounded by the fused generics' bodies when there
  /// are some.
  void storeResult(Value value, Value row, Value col) {
    if (gemm.rowScale) {
      Block *body = gemm.rowScale.getBody();
      IRMapping map;
      map.map(body->getArgument(0), value);
      map.map(body->getArgument(1), memref::LoadOp::create(b, gemm.rowScales, row).getResult());
      for (Operation &op : body->without_terminator())
        b.clone(op, map);
      value = map.lookupOrDefault(body->getTerminator()->getOperand(0));
    }
    if (!gemm.rounding) {
      memref::StoreOp::create(b, value, gemm.epilogueOut(), ValueRange{row, col});
      return;
    }
    Block *body = gemm.rounding.getBody();
    IRMapping map;
    map.map(body->getArgument(0), value);
    for (Operation &op : body->without_terminator())
      b.clone(op, map);
    memref::StoreOp::create(b, map.lookupOrDefault(body->getTerminator()->getOperand(0)),
                            gemm.roundedOut, ValueRange{row, col});
  }

  /// The GLU generic's body on (gate, up), stored at tile coordinates
  /// (r, c) of the activation's output when inside it.
  void storeActivatedIfInside(Value r, Value c, Value gate, Value up) {
    Value row = add(rowBase, r), col = add(colBase, c);
    auto inside = scf::IfOp::create(b, b.getLoc(), andI(ult(row, rows), ult(col, outCols)));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&inside.getThenRegion().front());
    Block *body = gemm.glu.getBody();
    IRMapping map;
    map.map(body->getArgument(0), gate);
    map.map(body->getArgument(1), up);
    for (Operation &op : body->without_terminator())
      b.clone(op, map);
    storeResult(map.lookupOrDefault(body->getTerminator()->getOperand(0)), row, col);
  }

  /// Writes the accumulator of tile element (warp tile origin + mma tile
  /// (mt, nt) + lane's element v); `accAt(mt, nt, v)` reads it.
  void emitEpilogueFor(Value laneId, Value wr, Value wc, function_ref<Value(int64_t, int64_t, int64_t)> accAt) {
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

  void emitEpilogue(ArrayRef<Value> accs) {
    emitEpilogueFor(lane, warpRow, warpCol, [&](int64_t mt, int64_t nt, int64_t v) {
      return accs[(mt * kMmaTilesN + nt) * kAccsPerMma + v];
    });
  }

  /// The generic (and with the GLU its activation, and the intermediate
  /// buffer no one reads any more) are replaced by the kernel.
  void eraseReplaced() {
    Value out = gemm.out;
    gemm.op.erase();
    if (gemm.glu) {
      SmallVector<Operation *> views;
      for (Value half : gemm.glu.getDpsInputs())
        views.push_back(half.getDefiningOp());
      gemm.glu.erase();
      for (Operation *view : views)
        view->erase();
    }
    if (gemm.rowScale)
      gemm.rowScale.erase();
    if (gemm.rounding)
      gemm.rounding.erase();
    // Intermediate f32 buffers no one writes or reads any more.
    if (gemm.glu)
      eraseUnusedBuffer(out);
    if (gemm.rowScale && gemm.scaledOut != gemm.productOut())
      eraseUnusedBuffer(gemm.productOut());
    if (gemm.rounding)
      eraseUnusedBuffer(gemm.epilogueOut());
    eraseDeadFills(gemm.rounding ? gemm.roundedOut : gemm.epilogueOut());
  }

  /// Erases `buffer`'s fills and allocation when nothing else uses it; its
  /// sizes, still asked for by memref.dim, are the lhs rows and its static
  /// width.
  void eraseUnusedBuffer(Value buffer) {
    for (Operation *user : llvm::make_early_inc_range(buffer.getUsers())) {
      if (auto dimOp = dyn_cast<memref::DimOp>(user)) {
        std::optional<int64_t> index = dimOp.getConstantIndex();
        if (!index)
          continue;
        OpBuilder at(dimOp);
        Value size = *index == 0 ? memref::DimOp::create(at, dimOp.getLoc(), gemm.lhs, 0).getResult()
                                 : arith::ConstantIndexOp::create(
                                       at, dimOp.getLoc(), cast<MemRefType>(buffer.getType()).getDimSize(1))
                                       .getResult();
        dimOp.replaceAllUsesWith(size);
      }
      if (isa<linalg::FillOp, memref::DimOp>(user) && user->use_empty())
        user->erase();
    }
    if (auto alloc = buffer.getDefiningOp<memref::AllocOp>(); alloc && alloc->use_empty())
      alloc.erase();
  }

  /// The kernel writes every element of `buffer` (rows of no expert as
  /// 0, as the generic did): a fill just before it, with nothing else
  /// touching `buffer` in between, is dead.
  void eraseDeadFills(Value buffer) {
    for (Operation *user : llvm::make_early_inc_range(buffer.getUsers())) {
      if (!isa<linalg::FillOp>(user) || user->getBlock() != kernel->getBlock() ||
          !user->isBeforeInBlock(kernel))
        continue;
      bool touchedBetween = llvm::any_of(buffer.getUsers(), [&](Operation *other) {
        Operation *top = kernel->getBlock()->findAncestorOpInBlock(*other);
        return other != user && !isa<memref::DimOp>(other) && top && top != kernel &&
               user->isBeforeInBlock(top) && top->isBeforeInBlock(kernel);
      });
      if (!touchedBetween)
        user->erase();
    }
  }

  // --- the Hopper kernel (sm_90a: TMA loads, wgmma) -----------------------

  Value constI32(int64_t v) { return arith::ConstantIntOp::create(b, v, 32); }
  Value constI64(int64_t v) { return arith::ConstantIntOp::create(b, v, 64); }
  Value toI32(Value index) { return arith::IndexCastOp::create(b, b.getI32Type(), index); }
  Value toI64(Value index) { return arith::IndexCastOp::create(b, b.getI64Type(), index); }
  Value mul(Value a, int64_t c) { return arith::MulIOp::create(b, a, idx(c)); }

  /// A shared-memory pointer for byte `offset` of the aligned dynamic buffer.
  Value sharedPointer(Value offset) {
    return LLVM::IntToPtrOp::create(b, LLVM::LLVMPointerType::get(b.getContext(), 3),
                                    toI64(add(alignedShared, offset)));
  }
  Value stageOffset(Value stageIndex) { return mul(stageIndex, hopper::kStageBytes); }
  Value barrierPointer(Value stageIndex) {
    return sharedPointer(add(mul(stageIndex, 8), hopper::kStages * hopper::kStageBytes));
  }

  /// The host-side TMA descriptor of `memref` (64 x 64 boxes over its last
  /// two dimensions, 1 in the others): a device pointer the runtime fills.
  Value tensorMap(Value memref) {
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

  void buildHopper() {
    Value rows = dim(gemm.lhs, 0), depth = dim(gemm.lhs, 1), cols = dim(gemm.out, 1);
    numExperts = dim(gemm.weights, 0);
    numGroups = gemm.shared ? add(numExperts, 1) : numExperts;
    outCols = gemm.glu ? dim(gemm.gluOut, 1) : cols;
    int64_t blockCols = gemm.glu ? hopper::kTileN / 2 : hopper::kTileN;
    Value gridX = ceilDiv(outCols, blockCols);
    Value gridY = arith::MaxUIOp::create(b, ceilDiv(rows, hopper::kTileM), idx(1));
    if (!emulate) {
      mapA = tensorMap(gemm.lhs);
      mapW = tensorMap(gemm.weights);
      if (gemm.shared)
        mapShared = tensorMap(gemm.shared);
    }
    gpu::LaunchOp launch =
        openLaunch({gridX, gridY}, emulate ? 1 : hopper::kThreads, emulate ? Value() : constI32(hopper::kSharedBytes),
                   TypeRange{}, {rows, depth, cols}, {hopper::kTileM, blockCols});
    if (emulate)
      return buildEmulatedHopper(blockCols);
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

    emitRowsOfNoExpert(blockCols);
    forEachHopperGroup([&](Value group, Value steps) { return emitHopperGroup(group, steps); });
    eraseReplaced();
  }

  /// Rows of no expert are 0 (through the fused epilogue, as in the generic).
  void emitRowsOfNoExpert(int64_t blockCols) {
    forTileElements(blockCols, [&](Value r, Value c) {
      Value row = add(rowBase, r);
      auto inRows = scf::IfOp::create(b, b.getLoc(), ult(row, rows));
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&inRows.getThenRegion().front());
      Value e = memref::LoadOp::create(b, gemm.rowExperts, row);
      auto none = scf::IfOp::create(b, b.getLoc(),
                                    arith::CmpIOp::create(b, arith::CmpIPredicate::slt, e, constI32(0)));
      b.setInsertionPointToStart(&none.getThenRegion().front());
      storeEpilogue(r, c, f32(0.0), f32(0.0));
    });
  }

  /// The Hopper kernels' expert loop: `body(group, steps)` (a K loop and
  /// an epilogue) returns `steps` plus its K steps; the running count gives
  /// the pipeline's stage and phase.
  void forEachHopperGroup(function_ref<Value(Value, Value)> body) {
    forEachGroup(hopper::kTileM, ValueRange{idx(0)}, [&](Value group, ValueRange steps) -> SmallVector<Value> {
      return {body(group, steps[0])};
    });
  }

  void ifLeader(function_ref<void()> body) {
    auto ifOp = scf::IfOp::create(b, b.getLoc(), arith::CmpIOp::create(b, arith::CmpIPredicate::eq, threadId, idx(0)));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    body();
  }

  /// body(r, c) for every element of the block's tile of output columns,
  /// spread over the threads (consecutive threads, consecutive columns).
  void forTileElements(int64_t width, function_ref<void(Value, Value)> body) {
    forEach(hopper::kTileM * width / hopper::kThreads, [&](Value i) {
      Value flat = add(threadId, mul(i, hopper::kThreads));
      body(arith::DivUIOp::create(b, flat, idx(width)), arith::RemUIOp::create(b, flat, idx(width)));
    });
  }

  /// The fused epilogue of output element (r, c) of the tile from its f32
  /// product (with the GLU: the gate and up products).
  void storeEpilogue(Value r, Value c, Value gate, Value up) {
    if (gemm.glu)
      storeActivatedIfInside(r, c, gate, up);
    else
      storeIfInside(r, c, gate);
  }

  /// Thread 0 starts K step `j` of `group` (the `step`-th overall): the
  /// stage's mbarrier expects the three boxes' bytes, then TMA loads the lhs
  /// rows and the two 64-row halves of the weight tile (plain: 128
  /// consecutive output columns; GLU: 64 gate rows and their 64 up rows).
  void issueLoads(Value step, Value j, Value group) {
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

  /// The first weight rows of the two boxes of a weight tile: 128
  /// consecutive output columns, or with the GLU 64 gate rows and their 64
  /// up rows F further.
  SmallVector<Value> weightBoxRows() {
    return {colBase, gemm.glu ? add(outCols, colBase) : add(colBase, hopper::kBoxRows)};
  }

  /// The wgmma matrix descriptor of a K-major tile at shared byte `offset`
  /// written by TMA with the 128-byte swizzle: rows of 128 bytes, 8-row
  /// groups 1024 bytes apart (PTX ISA, "Matrix Descriptor Format").
  Value matrixDescriptor(Value offset) {
    Value address = toI64(add(alignedShared, offset));
    Value start = arith::ShRUIOp::create(b, arith::AndIOp::create(b, address, constI64(0x3FFFF)), constI64(4));
    int64_t fields = (int64_t(1) << 16)                        // leading byte offset (unused when swizzled)
                     | (int64_t(hopper::kAlign >> 4) << 32)    // stride byte offset: 8 rows of 128 bytes
                     | (int64_t(1) << 62);                     // 128-byte swizzle
    return arith::OrIOp::create(b, start, constI64(fields));
  }

  /// One expert's K loop and epilogue; returns `steps` plus its K steps.
  /// The K loop of both Hopper forms, over numK steps of kTileK: the first
  /// kStages - 1 steps are issued up front, then step j issues step j +
  /// kStages - 1 (into the stage step j - 1 read, which every thread has
  /// finished) and consumes step j. `issue(step, j)` and `consume(step, j,
  /// iterArgs)` get the step's number overall (stage and phase) and within
  /// the expert; consume returns the new iterArgs.
  SmallVector<Value> emitStageSchedule(Value steps, Value numK, ValueRange init,
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

  Value emitHopperGroup(Value group, Value steps) {
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

  /// The tile coordinates of thread `tid`'s wgmma accumulators, in order.
  SmallVector<std::pair<Value, Value>> fragmentCoords(Value tid) {
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

  /// The accumulators into the shared f32 tile (wgmma's D layout: warp w
  /// holds rows 16w..16w+15; value 4j + v of lane l is row g + 8 (v / 2),
  /// column 8j + 2t + v % 2, g = l / 4, t = l % 4), then the fused epilogue
  /// for the rows of `group` only, element by element across the threads.
  void emitHopperEpilogue(Value acc, Value group) {
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

  /// The fused epilogue of the rows of `group` from the shared f32 tile
  /// (with the GLU: gate products at column c, up products at c + 64).
  void emitGroupRows(Value group) {
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

  // --- the Hopper kernel emulated (moe-gpu-launch-to-loops) ---------------
  //
  // One thread per block: each K step copies the same boxes TMA loads (the
  // lhs rows of the tile whatever their expert, zeros outside the
  // matrices) into plain tiles, multiplies them with scalar loops, and the
  // accumulators go to the epilogue tile through wgmma's D fragment layout;
  // the zero rows and the epilogue run for each of the 128 thread ids.
  // Swizzling, descriptors, mbarriers and wgmma themselves are not run.

  void buildEmulatedHopper(int64_t blockCols) {
    auto scope = memref::AllocaScopeOp::create(b, b.getLoc(), TypeRange{});
    Block *scopeBody = new Block();
    scope.getBodyRegion().push_back(scopeBody);
    b.setInsertionPointToStart(scopeBody);
    stagesA = memref::AllocaOp::create(b, MemRefType::get({hopper::kStages, hopper::kTileM, hopper::kTileK}, element));
    stagesB = memref::AllocaOp::create(b, MemRefType::get({hopper::kStages, hopper::kTileN, hopper::kTileK}, element));
    accTile = memref::AllocaOp::create(b, MemRefType::get({hopper::kTileM, hopper::kTileN}, b.getF32Type()));
    epilogueTile =
        memref::AllocaOp::create(b, MemRefType::get({hopper::kTileM, hopper::kEpilogueStride}, b.getF32Type()));
    forEach(hopper::kThreads, [&](Value tid) {
      threadId = tid;
      emitRowsOfNoExpert(blockCols);
    });
    forEachHopperGroup([&](Value group, Value steps) { return emitEmulatedHopperGroup(group, steps); });
    memref::AllocaScopeReturnOp::create(b, b.getLoc(), ValueRange{});
    eraseReplaced();
  }

  /// Stage `stageIndex` of a [stages, rows, cols] buffer as a 2-D view.
  Value stageOf(Value stages, Value stageIndex) {
    auto type = cast<MemRefType>(stages.getType());
    SmallVector<OpFoldResult> offsets = {stageIndex, b.getIndexAttr(0), b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(type.getDimSize(1)),
                                       b.getIndexAttr(type.getDimSize(2))};
    SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
    auto view = memref::SubViewOp::create(b, b.getLoc(), stages, offsets, sizes, strides);
    return memref::CollapseShapeOp::create(b, b.getLoc(), view, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
  }

  Value emitEmulatedHopperGroup(Value group, Value steps) {
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

  // --- emulation ----------------------------------------------------------

  /// accTile[r, c] += Σ_k tileA[r, k] · tileB[c, k] over the first `depth`
  /// columns of the staged tiles, in f32 (the emulated products).
  void accumulateProduct(Value r, Value c, int64_t depth) {
    Value sum = memref::LoadOp::create(b, accTile, ValueRange{r, c});
    auto kLoop = scf::ForOp::create(b, b.getLoc(), idx(0), idx(depth), idx(1), ValueRange{sum});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(kLoop.getBody());
      Value kk = kLoop.getInductionVar();
      Value x = arith::ExtFOp::create(b, b.getF32Type(), memref::LoadOp::create(b, tileA, ValueRange{r, kk}).getResult());
      Value y = arith::ExtFOp::create(b, b.getF32Type(), memref::LoadOp::create(b, tileB, ValueRange{c, kk}).getResult());
      Value acc = arith::AddFOp::create(b, kLoop.getRegionIterArgs()[0], arith::MulFOp::create(b, x, y));
      scf::YieldOp::create(b, b.getLoc(), acc);
    }
    memref::StoreOp::create(b, kLoop.getResult(0), accTile, ValueRange{r, c});
  }

  /// The warps' mma tiles as scalar loops over the staged tiles.
  void emitEmulatedProducts() {
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

  /// The epilogue lane by lane through the accumulator layout.
  void emitEmulatedEpilogue() {
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

  GroupedGemm gemm;
  bool emulate, hopper;
  ImplicitLocOpBuilder b;
  Type element;
  Operation *kernel = nullptr;
  Value rows, depth, cols, outCols, numExperts, numGroups, rowBase, colBase;
  Value tileA, tileB, accTile;                              // shared tiles; emulation's accumulators
  bool vectorStaging = false;                               // K % kVector == 0: 16-byte copies
  Value stage;                                              // the pipelined loop's current stage
  Value threadId, lane, warpRow, warpCol;                   // real kernel only
  Value alignedShared, epilogueTile, mapA, mapW, mapShared; // Hopper kernel only
  Value stagesA, stagesB;                                   // the emulated Hopper kernel's stage ring
};

/// Whether TMA can load the operands: contiguous rows whose byte stride is a
/// multiple of 16 (K a multiple of 8).
bool fitsTma(const GroupedGemm &gemm) {
  auto contiguous = [](Value v) { return !v || cast<MemRefType>(v.getType()).getLayout().isIdentity(); };
  int64_t depth = cast<MemRefType>(gemm.lhs.getType()).getDimSize(1);
  return !ShapedType::isDynamic(depth) && depth % 8 == 0 && contiguous(gemm.lhs) && contiguous(gemm.weights) &&
         contiguous(gemm.shared);
}

struct MoeTensorCoreGemmPass : mlir::moe::impl::MoeTensorCoreGemmBase<MoeTensorCoreGemmPass> {
  using MoeTensorCoreGemmBase::MoeTensorCoreGemmBase;

  void runOnOperation() override {
    SmallVector<GroupedGemm> gemms;
    getOperation().walk([&](linalg::GenericOp op) {
      if (!op->hasAttr(moe::kGroupedGemmAttrName))
        return;
      FailureOr<GroupedGemm> gemm = matchGroupedGemm(op);
      if (succeeded(gemm))
        gemms.push_back(*gemm);
    });
    for (const GroupedGemm &gemm : gemms)
      TensorCoreKernelBuilder(gemm, emulate, wgmma && fitsTma(gemm)).build();
  }
};
} // namespace
