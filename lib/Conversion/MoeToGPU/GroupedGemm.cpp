//===- GroupedGemm.cpp - a grouped matmul the tensor-core kernels replace -===//

#include "GroupedGemm.h"
#include "dialects/moe/MoeDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::moe::gpu_gemm;

namespace {

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

} // namespace

FailureOr<GroupedGemm> mlir::moe::gpu_gemm::matchGroupedGemm(linalg::GenericOp op) {
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
