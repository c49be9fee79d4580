//===- KernelBuilder.cpp - what every grouped-GEMM kernel builder shares --===//

#include "KernelBuilder.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

using namespace mlir;
using namespace mlir::moe::gpu_gemm;

void KernelBuilder::readSizes() {
  rows = dim(gemm.lhs, 0);
  depth = dim(gemm.lhs, 1);
  cols = dim(gemm.out, 1);
  numExperts = dim(gemm.weights, 0);
  numGroups = gemm.shared ? add(numExperts, 1) : numExperts;
  outCols = gemm.glu ? dim(gemm.gluOut, 1) : cols;
}

Block *KernelBuilder::bareBlock(Block *block) {
  if (!block->empty() && block->back().hasTrait<OpTrait::IsTerminator>())
    block->back().erase();
  return block;
}

void KernelBuilder::forEach(int64_t n, function_ref<void(Value)> body) {
  auto loop = scf::ForOp::create(b, b.getLoc(), idx(0), idx(n), idx(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(loop.getBody()->getTerminator());
  body(loop.getInductionVar());
}

Value KernelBuilder::rowTileCount(int64_t tileRows) {
  return add(arith::DivUIOp::create(b, rows, idx(tileRows)), add(numGroups, 2));
}

Value KernelBuilder::rangeStart(Value range) {
  auto start = scf::IfOp::create(b, b.getLoc(), TypeRange{b.getIndexType()},
                                 arith::CmpIOp::create(b, arith::CmpIPredicate::eq, range, idx(0)), true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&start.getThenRegion().front());
  scf::YieldOp::create(b, b.getLoc(), idx(0));
  b.setInsertionPointToStart(&start.getElseRegion().front());
  scf::YieldOp::create(b, b.getLoc(), offsetAt(arith::SubIOp::create(b, range, idx(1))));
  return start.getResult(0);
}

void KernelBuilder::scheduleRowTile(Value tile, int64_t tileRows) {
  // Range r (r in [0, G + 2)) starting at row s_r owns the tile numbers
  // [S(r), S(r + 1)) with S(r) = s_r / tileRows + r: at least its
  // ceil(length / tileRows) tiles, and S is increasing (the offsets are the
  // dispatch's prefix sums, non-decreasing), so the block's
  // range is found by binary search (log2(G + 2) loads, the same in every
  // thread of the block) rather than by a pass over every group.
  auto slot = [&](Value range) {
    return add(arith::DivUIOp::create(b, rangeStart(range), idx(tileRows)), range);
  };
  Value numRanges = add(numGroups, 2);
  auto search = scf::WhileOp::create(b, b.getLoc(), TypeRange{b.getIndexType(), b.getIndexType()},
                                     ValueRange{idx(0), numRanges});
  {
    OpBuilder::InsertionGuard guard(b);
    Block *before = b.createBlock(&search.getBefore(), {}, {b.getIndexType(), b.getIndexType()},
                                  {b.getLoc(), b.getLoc()});
    Value lo = before->getArgument(0), hi = before->getArgument(1);
    scf::ConditionOp::create(b, b.getLoc(), ult(add(lo, 1), hi), ValueRange{lo, hi});
    Block *after = b.createBlock(&search.getAfter(), {}, {b.getIndexType(), b.getIndexType()},
                                 {b.getLoc(), b.getLoc()});
    lo = after->getArgument(0);
    hi = after->getArgument(1);
    Value mid = arith::DivUIOp::create(b, add(lo, hi), idx(2));
    Value atOrBelow = arith::CmpIOp::create(b, arith::CmpIPredicate::ule, slot(mid), tile);
    scf::YieldOp::create(b, b.getLoc(), ValueRange{arith::SelectOp::create(b, atOrBelow, mid, lo),
                                                   arith::SelectOp::create(b, atOrBelow, hi, mid)});
  }
  Value range = search.getResult(0);
  Value start = rangeStart(range);
  auto end = scf::IfOp::create(b, b.getLoc(), TypeRange{b.getIndexType()}, ult(range, add(numGroups, 1)), true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&end.getThenRegion().front());
    scf::YieldOp::create(b, b.getLoc(), arith::MaxSIOp::create(b, offsetAt(range), start).getResult());
    b.setInsertionPointToStart(&end.getElseRegion().front());
    scf::YieldOp::create(b, b.getLoc(), rows);
  }
  Value rangeEnd = end.getResult(0);
  Value local = arith::SubIOp::create(b, tile, add(arith::DivUIOp::create(b, start, idx(tileRows)), range));
  Value first = add(start, mul(local, tileRows));
  // A slot past the range's tiles has no rows.
  Value active = ult(first, rangeEnd);
  rowBase = arith::SelectOp::create(b, active, first, idx(0));
  rowEnd = arith::SelectOp::create(b, active, arith::MinUIOp::create(b, add(first, tileRows), rangeEnd), idx(0));
  // Ranges 1..G are the row groups 0..G-1.
  Value isGroup = andI(arith::CmpIOp::create(b, arith::CmpIPredicate::uge, range, idx(1)),
                       arith::CmpIOp::create(b, arith::CmpIPredicate::ule, range, numGroups));
  tileHasGroup = andI(active, isGroup);
  tileGroup = arith::SelectOp::create(b, isGroup, arith::SubIOp::create(b, range, idx(1)), idx(0));
}

gpu::LaunchOp KernelBuilder::openLaunch(std::array<Value, 2> grid, int64_t threads, Value sharedBytes, TypeRange workgroup,
                                        std::array<Value, 3> sizes, std::array<int64_t, 2> tile) {
  auto launch = gpu::LaunchOp::create(b, b.getLoc(), grid[0], grid[1], idx(1), idx(threads), idx(1), idx(1),
                                      sharedBytes, Type(), ValueRange{}, workgroup);
  kernel = launch;
  Block &body = launch.getBody().front();
  b.setInsertionPointToStart(&body);
  gpu::TerminatorOp::create(b, b.getLoc());
  b.setInsertionPoint(body.getTerminator());
  std::tie(rows, depth, cols) = std::tuple(sizes[0], sizes[1], sizes[2]);
  scheduleRowTile(launch.getBlockIds().y, tile[0]);
  colBase = arith::MulIOp::create(b, launch.getBlockIds().x, idx(tile[1]));
  return launch;
}

Value KernelBuilder::scratch(MemRefType type) { return memref::AllocOp::create(b, type); }

Value KernelBuilder::loadOrZero(Value cond, function_ref<Value()> load) {
  auto ifOp = scf::IfOp::create(b, b.getLoc(), TypeRange{element}, cond, /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  scf::YieldOp::create(b, b.getLoc(), load());
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, b.getLoc(), arith::ConstantOp::create(b, b.getZeroAttr(element)).getResult());
  return ifOp.getResult(0);
}

Value KernelBuilder::offsetAt(Value i) {
  Value v = arith::IndexCastOp::create(b, b.getIndexType(), memref::LoadOp::create(b, gemm.offsets, i));
  return arith::MinSIOp::create(b, arith::MaxSIOp::create(b, v, idx(0)), rows);
}

SmallVector<Value> KernelBuilder::forTileGroup(ValueRange init,
                                               function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  auto ifOp = scf::IfOp::create(b, b.getLoc(), init.getTypes(), tileHasGroup, /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(bareBlock(&ifOp.getThenRegion().front()));
  scf::YieldOp::create(b, b.getLoc(), body(tileGroup, init));
  b.setInsertionPointToStart(bareBlock(&ifOp.getElseRegion().front()));
  scf::YieldOp::create(b, b.getLoc(), init);
  return SmallVector<Value>(ifOp.getResults());
}

Value KernelBuilder::rowInGroup(Value r, Value group) {
  Value row = add(rowBase, r);
  auto rowIf = scf::IfOp::create(b, b.getLoc(), TypeRange{b.getI1Type()}, ult(row, rowEnd), true);
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

void KernelBuilder::storeIfInside(Value r, Value c, Value value) {
  Value row = add(rowBase, r), col = add(colBase, c);
  auto inside = scf::IfOp::create(b, b.getLoc(), andI(ult(row, rowEnd), ult(col, cols)));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&inside.getThenRegion().front());
  storeResult(value, row, col);
}

void KernelBuilder::storeResult(Value value, Value row, Value col) {
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

void KernelBuilder::storeActivatedIfInside(Value r, Value c, Value gate, Value up) {
  Value row = add(rowBase, r), col = add(colBase, c);
  auto inside = scf::IfOp::create(b, b.getLoc(), andI(ult(row, rowEnd), ult(col, outCols)));
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

void KernelBuilder::eraseReplaced() {
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

void KernelBuilder::eraseUnusedBuffer(Value buffer) {
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

void KernelBuilder::eraseDeadFills(Value buffer) {
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

void KernelBuilder::accumulateProduct(Value r, Value c, int64_t depth) {
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
