//===- CopyAsLoop.cpp - memref.copy as explicit loads and stores ----------===//

#include "CopyAsLoop.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

// `copy` as a parallel loop of loads and stores: what a copy between
// strided buffers, or one inside a loop body, must become on the GPU.
bool mlir::moe::hasIdentityLayout(Value memref) {
  return cast<MemRefType>(memref.getType()).getLayout().isIdentity();
}

void mlir::moe::copyAsLoop(memref::CopyOp copy) {
  OpBuilder b(copy);
  Location loc = copy.getLoc();
  auto type = cast<MemRefType>(copy.getSource().getType());
  Value zero = arith::ConstantIndexOp::create(b, loc, 0), one = arith::ConstantIndexOp::create(b, loc, 1);
  SmallVector<Value> lbs, ubs, steps;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    lbs.push_back(zero);
    ubs.push_back(memref::DimOp::create(b, loc, copy.getSource(), d));
    steps.push_back(one);
  }
  if (type.getRank() == 0) {
    Value v = memref::LoadOp::create(b, loc, copy.getSource(), ValueRange{});
    memref::StoreOp::create(b, loc, v, copy.getTarget(), ValueRange{});
  } else {
    scf::ParallelOp::create(b, loc, lbs, ubs, steps,
                            [&](OpBuilder &nb, Location nl, ValueRange ivs) {
                              Value v = memref::LoadOp::create(nb, nl, copy.getSource(), ivs);
                              memref::StoreOp::create(nb, nl, v, copy.getTarget(), ivs);
                            });
  }
  copy.erase();
}

