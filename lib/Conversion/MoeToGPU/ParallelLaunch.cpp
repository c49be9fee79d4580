//===- ParallelLaunch.cpp - kernels over a parallel loop's iterations -----===//

#include "ParallelLaunch.h"

#include "mlir/Dialect/Arith/IR/Arith.h"

using namespace mlir;

Value mlir::moe::ceilDiv(OpBuilder &b, Location loc, Value a, Value d) {
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value sum = arith::AddIOp::create(b, loc, a, arith::SubIOp::create(b, loc, d, one));
  return arith::DivUIOp::create(b, loc, sum, d);
}

gpu::LaunchOp mlir::moe::createLaunch(OpBuilder &b, Location loc, Value blocks, Value threads) {
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  auto launch = gpu::LaunchOp::create(b, loc, blocks, one, one, threads, one, one);
  Block &body = launch.getBody().front();
  if (body.empty() || !body.back().hasTrait<OpTrait::IsTerminator>()) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(&body);
    gpu::TerminatorOp::create(b, loc);
  }
  return launch;
}

mlir::moe::FlatIterations mlir::moe::flattenIterations(OpBuilder &b, scf::ParallelOp loop) {
  Location loc = loop.getLoc();
  FlatIterations space;
  space.total = arith::ConstantIndexOp::create(b, loc, 1);
  for (auto [lb, ub, step] : llvm::zip(loop.getLowerBound(), loop.getUpperBound(), loop.getStep())) {
    Value span = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, ub, lb),
                                        arith::ConstantIndexOp::create(b, loc, 0));
    space.counts.push_back(ceilDiv(b, loc, span, step));
    space.total = arith::MulIOp::create(b, loc, space.total, space.counts.back());
  }
  return space;
}

void mlir::moe::mapIteration(OpBuilder &b, scf::ParallelOp loop, const FlatIterations &space, Value index,
                             IRMapping &map) {
  Location loc = loop.getLoc();
  Value rest = index;
  for (int64_t d = static_cast<int64_t>(space.counts.size()) - 1; d >= 0; --d) {
    Value position = arith::RemUIOp::create(b, loc, rest, space.counts[d]);
    rest = arith::DivUIOp::create(b, loc, rest, space.counts[d]);
    Value iv = arith::AddIOp::create(b, loc, loop.getLowerBound()[d],
                                     arith::MulIOp::create(b, loc, position, loop.getStep()[d]));
    map.map(loop.getInductionVars()[d], iv);
  }
}
