//===- ParallelLaunch.cpp - kernels over a parallel loop's iterations -----===//

#include "ParallelLaunch.h"

#include "mlir/Dialect/Arith/IR/Arith.h"

using namespace mlir;

namespace {

/// ceil(a / d) for non-negative indices.
Value ceilDiv(OpBuilder &b, Location loc, Value a, Value d) {
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value sum = arith::AddIOp::create(b, loc, a, arith::SubIOp::create(b, loc, d, one));
  return arith::DivUIOp::create(b, loc, sum, d);
}

} // namespace

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

mlir::moe::IterationThread mlir::moe::launchIterations(OpBuilder &b, scf::ParallelOp loop, int64_t blockSize,
                                                       int64_t threadsPerIteration) {
  Location loc = loop.getLoc();
  b.setInsertionPoint(loop);
  SmallVector<Value> counts;
  Value iterations = arith::ConstantIndexOp::create(b, loc, 1);
  for (auto [lb, ub, step] : llvm::zip(loop.getLowerBound(), loop.getUpperBound(), loop.getStep())) {
    Value span = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, ub, lb),
                                        arith::ConstantIndexOp::create(b, loc, 0));
    counts.push_back(ceilDiv(b, loc, span, step));
    iterations = arith::MulIOp::create(b, loc, iterations, counts.back());
  }
  Value perIteration = arith::ConstantIndexOp::create(b, loc, threadsPerIteration);
  Value threads = arith::ConstantIndexOp::create(b, loc, blockSize);
  Value total = arith::MulIOp::create(b, loc, iterations, perIteration);
  Value blocks = arith::MaxUIOp::create(b, loc, ceilDiv(b, loc, total, threads),
                                        arith::ConstantIndexOp::create(b, loc, 1));
  gpu::LaunchOp launch = createLaunch(b, loc, blocks, threads);

  b.setInsertionPointToStart(&launch.getBody().front());
  Value id = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, launch.getBlockIds().x, threads), launch.getThreadIds().x);
  Value iteration = id, lane = arith::ConstantIndexOp::create(b, loc, 0);
  if (threadsPerIteration != 1) {
    iteration = arith::DivUIOp::create(b, loc, id, perIteration);
    lane = arith::RemUIOp::create(b, loc, id, perIteration);
  }
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, iteration, iterations);
  auto guard = scf::IfOp::create(b, loc, inRange, /*withElseRegion=*/false);
  b.setInsertionPointToStart(&guard.getThenRegion().front());
  IterationThread thread{lane, {}};
  Value rest = iteration;
  for (int64_t d = static_cast<int64_t>(counts.size()) - 1; d >= 0; --d) {
    Value position = arith::RemUIOp::create(b, loc, rest, counts[d]);
    rest = arith::DivUIOp::create(b, loc, rest, counts[d]);
    Value iv = arith::AddIOp::create(b, loc, loop.getLowerBound()[d],
                                     arith::MulIOp::create(b, loc, position, loop.getStep()[d]));
    thread.map.map(loop.getInductionVars()[d], iv);
  }
  return thread;
}
