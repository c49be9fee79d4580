//===- SizeEquality.cpp - dynamic sizes known equal at compile time -----===//

#include "moe/Utils/SizeEquality.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;

namespace {

/// Where a size comes from: dimension `dim` of the tensor `value`, or, with
/// `dim` < 0, the index `value` itself.
struct SizeSource {
  Value value;
  int64_t dim;
};

/// Enough to walk the chains importers build; a longer one is unknown.
constexpr int kMaxDepth = 64;

SizeSource sourceOfIndex(Value index, int depth);

/// The source of dimension `dim` of `tensor`, followed back through the ops
/// that carry a size unchanged.
SizeSource sourceOfDim(Value tensor, int64_t dim, int depth) {
  for (; depth < kMaxDepth; ++depth) {
    auto type = dyn_cast<RankedTensorType>(tensor.getType());
    if (!type || dim >= type.getRank() || !type.isDynamicDim(dim))
      break;
    Operation *def = tensor.getDefiningOp();
    if (!def)
      break;
    if (auto dps = dyn_cast<DestinationStyleOpInterface>(def)) {
      auto result = cast<OpResult>(tensor);
      if (result.getResultNumber() >= dps.getNumDpsInits())
        break;
      tensor = dps.getDpsInitOperand(result.getResultNumber())->get();
      continue;
    }
    if (auto empty = dyn_cast<tensor::EmptyOp>(def))
      return sourceOfIndex(empty.getDynamicSize(dim), depth + 1);
    if (auto cast = dyn_cast<tensor::CastOp>(def)) {
      tensor = cast.getSource();
      continue;
    }
    break;
  }
  return {tensor, dim};
}

SizeSource sourceOfIndex(Value index, int depth) {
  if (depth < kMaxDepth)
    if (auto dimOp = index.getDefiningOp<tensor::DimOp>())
      if (std::optional<int64_t> d = dimOp.getConstantIndex())
        return sourceOfDim(dimOp.getSource(), *d, depth + 1);
  return {index, -1};
}

bool sameIndex(Value a, Value b, int depth);

bool sameSource(SizeSource a, SizeSource b, int depth) {
  if (a.value == b.value && a.dim == b.dim)
    return true;
  if (a.dim >= 0 || b.dim >= 0)
    return false;
  return sameIndex(a.value, b.value, depth + 1);
}

/// Two index values computed by the same pure ops from the same sizes (the
/// shape arithmetic of two Reshapes of one input, say).
bool sameIndex(Value a, Value b, int depth) {
  if (a == b)
    return true;
  if (depth >= kMaxDepth)
    return false;
  APInt ca, cb;
  if (matchPattern(a, m_ConstantInt(&ca)) && matchPattern(b, m_ConstantInt(&cb)))
    return ca == cb;
  Operation *da = a.getDefiningOp(), *db = b.getDefiningOp();
  if (!da || !db || da->getName() != db->getName() || da->getAttrDictionary() != db->getAttrDictionary() ||
      da->getNumOperands() != db->getNumOperands() || da->getNumResults() != 1 || !isPure(da))
    return false;
  for (auto [x, y] : llvm::zip(da->getOperands(), db->getOperands())) {
    if (x.getType() != y.getType())
      return false;
    if (isa<IndexType, IntegerType>(x.getType())) {
      if (!sameSource(sourceOfIndex(x, depth + 1), sourceOfIndex(y, depth + 1), depth + 1))
        return false;
    } else if (x != y) {
      return false;
    }
  }
  return true;
}

} // namespace

bool mlir::moe::provablySameSize(Value a, int64_t da, Value b, int64_t db) {
  auto ta = dyn_cast<RankedTensorType>(a.getType()), tb = dyn_cast<RankedTensorType>(b.getType());
  if (!ta || !tb)
    return false;
  if (!ta.isDynamicDim(da) && !tb.isDynamicDim(db))
    return ta.getDimSize(da) == tb.getDimSize(db);
  if (ta.isDynamicDim(da) != tb.isDynamicDim(db))
    return false;
  return sameSource(sourceOfDim(a, da, 0), sourceOfDim(b, db, 0), 0);
}
