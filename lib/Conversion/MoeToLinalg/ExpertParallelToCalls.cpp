//===- ExpertParallelToCalls.cpp - the exchange ops as runtime calls ------===//
//
// moe.ep_rank, moe.all_to_all_dispatch, moe.all_to_all_return and
// moe.all_gather_columns become calls of libmoe_ep_runtime.so
// (lib/Runtime/ExpertParallelRuntime.cpp on host buffers over MPI,
// NcclExchangeRuntime.cpp on device buffers over NCCL), through MLIR's C
// interface: memrefs of any layout go as descriptors, the results are
// buffers allocated here and handed to bufferization as tensors. The
// dispatch is two calls: the row counts first, whose sum sizes the buffer of
// received rows, then the rows. Every call is a host call whose scalar
// results stay on the host, so that a GPU program reads no device memory
// there: a global capacity (the C that all ranks' tokens give) is computed
// from the ranks' summed plan rows, a call of its own.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeDialect.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Conversion/MoeToLinalg.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

namespace {

/// A call of the runtime that runs on the host, also in a GPU program.
func::CallOp hostCall(OpBuilder &b, Location loc, func::FuncOp fn, ValueRange operands) {
  auto call = func::CallOp::create(b, loc, fn, operands);
  call->setAttr(kHostCallAttrName, b.getUnitAttr());
  return call;
}

/// The runtime's `name`, declared once per module with a C interface.
func::FuncOp runtimeFunction(Operation *from, StringRef name, TypeRange inputs, TypeRange results) {
  auto module = from->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(name))
    return existing;
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  auto function = func::FuncOp::create(b, module.getLoc(), name, b.getFunctionType(inputs, results));
  function.setPrivate();
  function->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), b.getUnitAttr());
  return function;
}

/// A memref of `rank` dynamic sizes and any strides: what the runtime takes.
MemRefType anyMemRef(MLIRContext *ctx, int64_t rank, Type element) {
  SmallVector<int64_t> dynamic(rank, ShapedType::kDynamic);
  return MemRefType::get(dynamic, element, StridedLayoutAttr::get(ctx, ShapedType::kDynamic, dynamic));
}

/// `tensor`'s buffer, read only, as anyMemRef.
Value readBuffer(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  SmallVector<int64_t> strides(type.getRank(), ShapedType::kDynamic);
  auto bufferType = MemRefType::get(type.getShape(), type.getElementType(),
                                    StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic, strides));
  Value buffer = bufferization::ToBufferOp::create(b, loc, bufferType, tensor, /*read_only=*/true);
  return memref::CastOp::create(b, loc, anyMemRef(b.getContext(), type.getRank(), type.getElementType()), buffer);
}

/// A new buffer the runtime writes, and the tensor it becomes afterwards.
struct Output {
  Value buffer, forCall;
};
Output allocate(OpBuilder &b, Location loc, ArrayRef<int64_t> shape, Type element, ValueRange dynamicSizes) {
  Value buffer = memref::AllocOp::create(b, loc, MemRefType::get(shape, element), dynamicSizes);
  return {buffer, memref::CastOp::create(b, loc, anyMemRef(b.getContext(), int64_t(shape.size()), element), buffer)};
}
Value asTensor(OpBuilder &b, Location loc, Value buffer, Type resultType) {
  auto type = cast<MemRefType>(buffer.getType());
  Value tensor = bufferization::ToTensorOp::create(b, loc, RankedTensorType::get(type.getShape(), type.getElementType()),
                                                   buffer, /*restrict=*/true, /*writable=*/true);
  return tensor.getType() == resultType ? tensor : tensor::CastOp::create(b, loc, resultType, tensor).getResult();
}

Value i64Constant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIntOp::create(b, loc, b.getI64Type(), value);
}

Value boundsBuffer(OpBuilder &b, Location loc, ArrayRef<int64_t> bounds) {
  auto type = RankedTensorType::get({int64_t(bounds.size())}, b.getI64Type());
  Value constant = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(type, bounds));
  return readBuffer(b, loc, constant);
}

std::string elementSuffix(Type element) {
  if (element.isF32())
    return "f32";
  if (element.isF16())
    return "f16";
  return "bf16";
}

/// C of `cap` over all ranks' tokens (`allRows` plan rows, k per token),
/// as CapacityAttr::perExpert computes it for one process: a fixed
/// `tokens`, else ceil(T * k / E * factor) in double.
Value globalCapacity(OpBuilder &b, Location loc, CapacityAttr cap, Value allRows, int64_t k, int64_t experts) {
  if (cap.getTokens() > 0)
    return i64Constant(b, loc, cap.getTokens());
  Type f64 = b.getF64Type();
  auto constant = [&](double v) { return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v)).getResult(); };
  Value tokens = arith::DivSIOp::create(b, loc, allRows, i64Constant(b, loc, k));
  Value c = arith::SIToFPOp::create(b, loc, f64, tokens);
  c = arith::MulFOp::create(b, loc, c, constant(double(k)));
  c = arith::DivFOp::create(b, loc, c, constant(double(experts)));
  c = arith::MulFOp::create(b, loc, c, constant(cap.getFactor().convertToDouble()));
  c = math::CeilOp::create(b, loc, c);
  return arith::FPToSIOp::create(b, loc, b.getI64Type(), c);
}

/// An exchange's lowering: the runtime entry points of host or device buffers.
template <typename Op> struct ExchangePattern : OpRewritePattern<Op> {
  ExchangePattern(MLIRContext *ctx, bool deviceExchanges) : OpRewritePattern<Op>(ctx), device(deviceExchanges) {}
  /// `moeEp<what>`, or `moeEpGpu<what>` on device buffers.
  std::string entry(StringRef what) const { return ((device ? "moeEpGpu" : "moeEp") + what).str(); }
  bool device;
};

struct LowerEpRank : OpRewritePattern<EpRankOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(EpRankOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Type i64 = b.getI64Type();
    func::FuncOp fn = runtimeFunction(op, "moeEpRank", {i64}, {i64});
    Value rank = hostCall(b, loc, fn, ValueRange{i64Constant(b, loc, op.getRanks())}).getResult(0);
    b.replaceOpWithNewOp<arith::IndexCastOp>(op, b.getIndexType(), rank);
    return success();
  }
};

struct LowerAllToAllDispatch : ExchangePattern<AllToAllDispatchOp> {
  using ExchangePattern::ExchangePattern;
  LogicalResult matchAndRewrite(AllToAllDispatchOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    MLIRContext *ctx = b.getContext();
    Type i32 = b.getI32Type(), i64 = b.getI64Type();
    auto rowsType = cast<RankedTensorType>(op.getRows().getType());
    Type element = rowsType.getElementType();
    ArrayRef<int64_t> bounds = op.getBounds();
    int64_t rank = op.getRank(), ranks = int64_t(bounds.size()) - 1;
    int64_t local = bounds[rank + 1] - bounds[rank], width = rowsType.getDimSize(1);

    Value rows = readBuffer(b, loc, op.getRows()), offsets = readBuffer(b, loc, op.getOffsets());
    Value boundsBuf = boundsBuffer(b, loc, bounds), rankValue = i64Constant(b, loc, rank);
    Output counts = allocate(b, loc, {ranks, local}, i32, {});
    func::FuncOp countsFn =
        runtimeFunction(op, this->entry("ExchangeCounts"),
                        {anyMemRef(ctx, 1, i32), anyMemRef(ctx, 1, i64), i64, anyMemRef(ctx, 2, i32)}, {i64});
    Value total =
        hostCall(b, loc, countsFn, ValueRange{offsets, boundsBuf, rankValue, counts.forCall}).getResult(0);
    Value keep = i64Constant(b, loc, -1);
    if (CapacityAttr cap = op.getCapacityAttr()) {
      Value planRows = arith::IndexCastOp::create(b, loc, i64, memref::DimOp::create(b, loc, rows, 0));
      func::FuncOp globalFn = runtimeFunction(op, "moeEpGlobalRows", {i64}, {i64});
      Value allRows = hostCall(b, loc, globalFn, ValueRange{planRows}).getResult(0);
      keep = globalCapacity(b, loc, cap, allRows, *op.getK(), *op.getExperts());
    }
    Value totalRows = arith::IndexCastOp::create(b, loc, b.getIndexType(), total);
    Output received = allocate(b, loc, {ShapedType::kDynamic, width}, element, {totalRows});
    Output localOffsets = allocate(b, loc, {local + 1}, i32, {});
    func::FuncOp rowsFn = runtimeFunction(
        op, this->entry("DispatchRows_" + elementSuffix(element)),
        {anyMemRef(ctx, 2, element), anyMemRef(ctx, 1, i32), anyMemRef(ctx, 1, i64), i64, anyMemRef(ctx, 2, i32),
         anyMemRef(ctx, 2, element), anyMemRef(ctx, 1, i32), i64, i64, anyMemRef(ctx, 1, b.getF32Type())},
        {});
    // The rows' priorities for a probs or slot_position capacity; none (0 of them) otherwise.
    Value weights = op.getRowWeights() ? readBuffer(b, loc, op.getRowWeights())
                                       : allocate(b, loc, {0}, b.getF32Type(), {}).forCall;
    hostCall(b, loc, rowsFn,
             ValueRange{rows, offsets, boundsBuf, rankValue, counts.forCall, received.forCall, localOffsets.forCall,
                        keep, i64Constant(b, loc, op.getRowWeights() ? 1 : 0), weights});
    b.replaceOp(op, {asTensor(b, loc, received.buffer, op.getReceived().getType()),
                     asTensor(b, loc, localOffsets.buffer, op.getLocalOffsets().getType()),
                     asTensor(b, loc, counts.buffer, op.getCounts().getType())});
    return success();
  }
};

struct LowerAllToAllReturn : ExchangePattern<AllToAllReturnOp> {
  using ExchangePattern::ExchangePattern;
  LogicalResult matchAndRewrite(AllToAllReturnOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    MLIRContext *ctx = b.getContext();
    Type i32 = b.getI32Type(), i64 = b.getI64Type();
    auto resultType = cast<RankedTensorType>(op.getResult().getType());
    Type element = resultType.getElementType();
    int64_t width = resultType.getDimSize(1);
    Value rows = readBuffer(b, loc, op.getRows()), counts = readBuffer(b, loc, op.getCounts());
    Value offsets = readBuffer(b, loc, op.getOffsets());
    Output result = allocate(b, loc, {ShapedType::kDynamic, width}, element, {op.getPlanRows()});
    func::FuncOp fn = runtimeFunction(op, this->entry("ReturnRows_" + elementSuffix(element)),
                                      {anyMemRef(ctx, 2, element), anyMemRef(ctx, 2, i32), anyMemRef(ctx, 1, i32),
                                       anyMemRef(ctx, 1, i64), i64, anyMemRef(ctx, 2, element)},
                                      {});
    hostCall(b, loc, fn,
             ValueRange{rows, counts, offsets, boundsBuffer(b, loc, op.getBounds()), i64Constant(b, loc, op.getRank()),
                        result.forCall});
    b.replaceOp(op, asTensor(b, loc, result.buffer, resultType));
    return success();
  }
};

struct LowerAllGatherColumns : ExchangePattern<AllGatherColumnsOp> {
  using ExchangePattern::ExchangePattern;
  LogicalResult matchAndRewrite(AllGatherColumnsOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    MLIRContext *ctx = b.getContext();
    auto resultType = cast<RankedTensorType>(op.getResult().getType());
    auto inputType = cast<RankedTensorType>(op.getInput().getType());
    Type element = resultType.getElementType();
    if (inputType.isDynamicDim(1))
      return b.notifyMatchFailure(op, "column blocks of a static width");
    Value input = readBuffer(b, loc, op.getInput());
    Value rows = memref::DimOp::create(b, loc, input, 0);
    Output result = allocate(b, loc, {ShapedType::kDynamic, int64_t(op.getRanks()) * inputType.getDimSize(1)}, element, {rows});
    func::FuncOp fn = runtimeFunction(op, this->entry("AllGatherColumns_" + elementSuffix(element)),
                                      {anyMemRef(ctx, 2, element), anyMemRef(ctx, 2, element)}, {});
    hostCall(b, loc, fn, ValueRange{input, result.forCall});
    b.replaceOp(op, asTensor(b, loc, result.buffer, resultType));
    return success();
  }
};

} // namespace

void mlir::moe::populateMoeExpertParallelToCallsPatterns(RewritePatternSet &patterns, bool deviceExchanges) {
  patterns.add<LowerEpRank>(patterns.getContext());
  patterns.add<LowerAllToAllDispatch, LowerAllToAllReturn, LowerAllGatherColumns>(patterns.getContext(),
                                                                                   deviceExchanges);
}
