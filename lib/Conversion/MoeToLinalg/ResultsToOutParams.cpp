//===- ResultsToOutParams.cpp - caller-allocated results where possible ---===//

#include "moe/Conversion/Passes.h"

#include "dialects/moe/MoeDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOERESULTSTOOUTPARAMS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
constexpr llvm::StringLiteral kCheckOutputDim = "moeRuntimeCheckOutputDim";

/// A public function's copy of a dynamically shaped result into the
/// caller's buffer: an artifact sizes every dynamic dimension as its one
/// token count, which a program whose result rows are, say, batch x
/// sequence does not match. The runtime hears both sizes of every dynamic
/// dimension (it records the first that differ: the artifact's call fails
/// with it), and the copy covers only what both hold, never past the
/// caller's buffer.
void guardDynamicCopy(memref::CopyOp copy, int64_t output, func::FuncOp checkFn) {
  auto target = cast<MemRefType>(copy.getTarget().getType());
  OpBuilder b(copy);
  Location loc = copy.getLoc();
  SmallVector<OpFoldResult> offsets, sizes, strides;
  for (int64_t d = 0; d < target.getRank(); ++d) {
    offsets.push_back(b.getIndexAttr(0));
    strides.push_back(b.getIndexAttr(1));
    if (!target.isDynamicDim(d)) {
      sizes.push_back(b.getIndexAttr(target.getDimSize(d)));
      continue;
    }
    Value got = memref::DimOp::create(b, loc, copy.getSource(), d);
    Value want = memref::DimOp::create(b, loc, copy.getTarget(), d);
    auto i64 = [&](Value v) { return arith::IndexCastOp::create(b, loc, b.getI64Type(), v).getResult(); };
    auto check = func::CallOp::create(b, loc, checkFn,
                                      ValueRange{arith::ConstantIntOp::create(b, loc, output, 64),
                                                 arith::ConstantIntOp::create(b, loc, d, 64), i64(got), i64(want)});
    check->setAttr(moe::kHostCallAttrName, b.getUnitAttr()); // a GPU program calls it from the host
    sizes.push_back(arith::MinUIOp::create(b, loc, got, want).getResult());
  }
  Value source = memref::SubViewOp::create(b, loc, copy.getSource(), offsets, sizes, strides);
  Value dest = memref::SubViewOp::create(b, loc, copy.getTarget(), offsets, sizes, strides);
  memref::CopyOp::create(b, loc, source, dest);
  copy.erase();
}

struct MoeResultsToOutParamsPass
    : mlir::moe::impl::MoeResultsToOutParamsBase<MoeResultsToOutParamsPass> {
  void runOnOperation() override {
    bufferization::BufferResultsToOutParamsOpts options;
    options.hoistStaticAllocs = true;
    options.modifyPublicFunctions = true;
    // The caller cannot size a buffer whose shape only the callee knows.
    options.filterFn = [](func::FuncOp *function) {
      return function->isPublic() || llvm::all_of(function->getResultTypes(), [](Type t) {
               auto shaped = dyn_cast<ShapedType>(t);
               return !shaped || shaped.hasStaticShape();
             });
    };
    ModuleOp module = getOperation();
    // Where each public function's out-parameters will start.
    llvm::DenseMap<func::FuncOp, unsigned> firstOutput;
    for (auto function : module.getOps<func::FuncOp>())
      if (function.isPublic() && !function.isExternal())
        firstOutput[function] = function.getNumArguments();
    if (failed(bufferization::promoteBufferResultsToOutParams(module, options)))
      return signalPassFailure();
    func::FuncOp checkFn;
    for (auto [function, first] : firstOutput) {
      SmallVector<std::pair<memref::CopyOp, int64_t>> copies;
      function.walk([&](memref::CopyOp copy) {
        auto arg = dyn_cast<BlockArgument>(copy.getTarget());
        if (arg && arg.getOwner()->isEntryBlock() && arg.getParentRegion() == &function.getBody() &&
            arg.getArgNumber() >= first && !cast<MemRefType>(arg.getType()).hasStaticShape())
          copies.push_back({copy, int64_t(arg.getArgNumber() - first)});
      });
      if (copies.empty())
        continue;
      if (!checkFn) {
        checkFn = module.lookupSymbol<func::FuncOp>(kCheckOutputDim);
        if (!checkFn) {
          OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
          Type i64 = b.getI64Type();
          checkFn = func::FuncOp::create(b, module.getLoc(), kCheckOutputDim,
                                         b.getFunctionType({i64, i64, i64, i64}, {}));
          checkFn.setPrivate();
        }
      }
      for (auto [copy, output] : copies)
        guardDynamicCopy(copy, output, checkFn);
    }
  }
};
} // namespace
