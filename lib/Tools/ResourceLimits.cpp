//===- ResourceLimits.cpp - the largest models the tools accept -----------===//

#include "moe/Tools/ResourceLimits.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

using namespace mlir;

/// The bytes the static dimensions of a shaped type hold (a dynamic one
/// counts as 1), or nullopt past kMaxTensorBytes (an element of unknown
/// width counts as 8 bytes).
static std::optional<int64_t> boundedBytes(ShapedType type) {
  ArrayRef<int64_t> shape = type.getShape();
  if (llvm::is_contained(shape, 0))
    return 0;
  Type element = type.getElementType();
  int64_t bytes = element.isIntOrFloat() ? std::max<int64_t>(1, (element.getIntOrFloatBitWidth() + 7) / 8) : 8;
  for (int64_t d : shape) {
    if (ShapedType::isDynamic(d))
      continue;
    if (bytes > moe::kMaxTensorBytes / d)
      return std::nullopt;
    bytes *= d;
  }
  return bytes;
}

/// An error at `loc` when `type` (or a type inside a function type) is too large.
static LogicalResult checkType(Type type, Location loc, StringRef what) {
  if (auto function = dyn_cast<FunctionType>(type)) {
    for (Type t : llvm::concat<const Type>(function.getInputs(), function.getResults()))
      if (failed(checkType(t, loc, what)))
        return failure();
    return success();
  }
  auto shaped = dyn_cast<ShapedType>(type);
  if (!shaped || !shaped.hasRank() || boundedBytes(shaped))
    return success();
  return emitError(loc) << what << " of type " << type << " holds more than 2^48 bytes, the largest tensor supported";
}

LogicalResult moe::checkTensorSizes(ModuleOp module) {
  WalkResult result = module->walk([](Operation *op) {
    for (Value v : op->getResults())
      if (failed(checkType(v.getType(), op->getLoc(), "a result")))
        return WalkResult::interrupt();
    for (Region &region : op->getRegions())
      for (Block &block : region)
        for (BlockArgument arg : block.getArguments())
          if (failed(checkType(arg.getType(), arg.getLoc(), "an argument")))
            return WalkResult::interrupt();
    if (auto function = dyn_cast<FunctionOpInterface>(op))
      if (failed(checkType(function.getFunctionType(), op->getLoc(), "the signature")))
        return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return failure(result.wasInterrupted());
}
