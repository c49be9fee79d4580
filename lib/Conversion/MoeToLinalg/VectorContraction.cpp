//===- VectorContraction.cpp - out = a · wᵀ as a tiled vector kernel ------===//
//
// The CPU form of every contraction (an nn.Linear: w is [N, K], rows of the
// output are rows of a). Weights are used in their stored [N, K] layout, so
// nothing is packed or copied per call, which keeps decode (a few rows per
// expert) at one pass over the weights:
//
//   parallel over blocks of kBlockRows rows x a column panel sized to stay in
//   L2 (the panel's weights are reused by every row of the block):
//     register tiles of MR rows x NR columns: MR·NR vector accumulators hold
//     partial dot products along k (vector.fma, VL lanes per step); each k
//     step loads MR rows of a and NR rows of w once; the last partial vector
//     is a masked read; each accumulator is summed across lanes at the end.
//   A tile that overhangs its block repeats the block's last row or column
//   (it computes and writes the same value again) instead of a remainder
//   kernel: one kernel to compile, and a decode step with a single row per
//   expert still reads each weight once (it is bound by memory, not FMAs).
//
// The order of every sum is fixed at compile time and each output element
// is computed by one iteration: results do not depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {

/// Register tile and vector length of a form.
struct TileShape {
  int64_t lanes;   // f32 lanes per vector register
  int64_t rows;    // MR
  int64_t columns; // NR
};

TileShape tileShapeOf(ContractionForm form) {
  // MR·NR accumulators + MR rows of a + one row of w in flight: 29 of the 32
  // AVX-512 registers, 16 of the 16 AVX2 ones. Four rows of a (4·K f32)
  // stay in a 32 KiB L1 up to K = 2048; six (the transposed 6 x 4 tile)
  // measured 15-30% slower at K = 1024-2048.
  if (form == ContractionForm::VectorTiles256)
    return {8, 3, 4};
  return {16, 4, 6};
}

/// Rows per parallel block: a block's rows reuse the column panel from L2.
constexpr int64_t kBlockRows = 64;
/// Bytes of weights one column panel should hold (half of a 1 MiB L2).
constexpr int64_t kPanelBytes = 512 * 1024;

/// Calls `body(start, acc)` for start = lo, lo + step, ... < hi (the last
/// tile may overhang hi). Returns the final accumulator.
Value tileLoop(OpBuilder &b, Location loc, Value lo, Value hi, int64_t step, Value init,
               function_ref<Value(OpBuilder &, Location, Value, Value)> body) {
  auto loop = scf::ForOp::create(b, loc, lo, hi, constIndex(b, loc, step), ValueRange{init},
                                 [&](OpBuilder &nb, Location nl, Value start, ValueRange iter) {
                                   scf::YieldOp::create(nb, nl, body(nb, nl, start, iter[0]));
                                 });
  return loop.getResult(0);
}

/// start, start + 1, ..., start + count - 1, each clamped to last.
SmallVector<Value> clampedIndices(OpBuilder &b, Location loc, Value start, int64_t count, Value last) {
  SmallVector<Value> indices;
  for (int64_t i = 0; i < count; ++i)
    indices.push_back(arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, start, constIndex(b, loc, i)), last));
  return indices;
}

/// A vector of `lanes` elements of row `row` of the 2-D tensor `t` from
/// column `k`, as f32. Out-of-range lanes read 0 unless `inBounds`.
Value readRow(OpBuilder &b, Location loc, Value t, Value row, Value k, int64_t lanes, bool inBounds) {
  Type element = cast<RankedTensorType>(t.getType()).getElementType();
  auto type = VectorType::get({lanes}, element);
  Value pad = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  auto read = vector::TransferReadOp::create(b, loc, type, t, ValueRange{row, k}, pad,
                                             ArrayRef<bool>{inBounds});
  if (element.isF32())
    return read;
  return arith::ExtFOp::create(b, loc, VectorType::get({lanes}, b.getF32Type()), read.getResult());
}

/// out[r, c] = a[r, :] · w[c, :] for the rows and columns given.
Value microKernel(OpBuilder &b, Location loc, Value a, Value w, Value out, ArrayRef<Value> rowIndex,
                  ArrayRef<Value> colIndex, Value k, Value kMain, bool partialVector, int64_t lanes) {
  int64_t rows = rowIndex.size(), cols = colIndex.size();
  auto accType = VectorType::get({lanes}, b.getF32Type());
  Value zero = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(accType, 0.0f));
  SmallVector<Value> init(rows * cols, zero);

  auto steps = [&](Value from, Value to, ValueRange acc, bool inBounds) -> ValueRange {
    return scf::ForOp::create(
               b, loc, from, to, constIndex(b, loc, lanes), acc,
               [&](OpBuilder &kb, Location kl, Value kk, ValueRange sums) {
                 SmallVector<Value> aRows, next(sums.begin(), sums.end());
                 for (int64_t i = 0; i < rows; ++i)
                   aRows.push_back(readRow(kb, kl, a, rowIndex[i], kk, lanes, inBounds));
                 for (int64_t j = 0; j < cols; ++j) {
                   Value wRow = readRow(kb, kl, w, colIndex[j], kk, lanes, inBounds);
                   for (int64_t i = 0; i < rows; ++i)
                     next[i * cols + j] = vector::FMAOp::create(kb, kl, aRows[i], wRow, next[i * cols + j]);
                 }
                 scf::YieldOp::create(kb, kl, next);
               })
        .getResults();
  };
  // Whole vectors, then at most one masked partial one.
  ValueRange sums = steps(constIndex(b, loc, 0), kMain, init, /*inBounds=*/true);
  if (partialVector)
    sums = steps(kMain, k, sums, /*inBounds=*/false);

  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, sums[i * cols + j],
                                              arith::FastMathFlags::reassoc);
      out = tensor::InsertOp::create(b, loc, sum, out, ValueRange{rowIndex[i], colIndex[j]});
    }
  return out;
}

} // namespace

Value lowering::tiledLinearF32(OpBuilder &b, Location loc, Value a, Value w, ContractionForm form) {
  TileShape tile = tileShapeOf(form);
  auto aType = cast<RankedTensorType>(a.getType());
  auto wType = cast<RankedTensorType>(w.getType());
  auto outType = RankedTensorType::get({aType.getDimSize(0), wType.getDimSize(0)}, b.getF32Type());
  SmallVector<Value> aDims = dimsOf(b, loc, a), wDims = dimsOf(b, loc, w);
  Value m = aDims[0], n = wDims[0], k = aDims[1];
  Value init = zeros(b, loc, outType, {m, n});
  Value zero = constIndex(b, loc, 0);
  Value lanes = constIndex(b, loc, tile.lanes);
  Value kMain = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, k, lanes), lanes);
  // A static k tells whether a partial vector is left.
  int64_t staticK = aType.getDimSize(1);
  bool partialVector = ShapedType::isDynamic(staticK) || staticK % tile.lanes != 0;

  // Columns per panel: a multiple of NR whose weights fill about kPanelBytes.
  int64_t panel = 8 * tile.columns;
  if (!ShapedType::isDynamic(wType.getDimSize(1))) {
    int64_t rowBytes = wType.getDimSize(1) * ((wType.getElementTypeBitWidth() + 7) / 8);
    panel = std::clamp<int64_t>(kPanelBytes / std::max<int64_t>(rowBytes, 1) / tile.columns, 1, 32) *
            tile.columns;
  }
  Value panelSize = constIndex(b, loc, panel), blockRows = constIndex(b, loc, kBlockRows);

  auto rowBlocks = scf::ForOp::create(
      b, loc, zero, m, blockRows, ValueRange{init},
      [&](OpBuilder &rb, Location rl, Value m0, ValueRange rowIter) {
        auto panels = scf::ForOp::create(
            rb, rl, zero, n, panelSize, rowIter, [&](OpBuilder &pb, Location pl, Value n0, ValueRange iter) {
              Value mEnd = arith::MinUIOp::create(pb, pl, arith::AddIOp::create(pb, pl, m0, blockRows), m);
              Value nEnd = arith::MinUIOp::create(pb, pl, arith::AddIOp::create(pb, pl, n0, panelSize), n);
              Value lastRow = arith::SubIOp::create(pb, pl, mEnd, constIndex(pb, pl, 1));
              Value lastCol = arith::SubIOp::create(pb, pl, nEnd, constIndex(pb, pl, 1));
              Value out = tileLoop(
                  pb, pl, m0, mEnd, tile.rows, iter[0], [&](OpBuilder &mb, Location ml, Value row, Value acc) {
                    SmallVector<Value> rows = clampedIndices(mb, ml, row, tile.rows, lastRow);
                    return tileLoop(mb, ml, n0, nEnd, tile.columns, acc,
                                    [&](OpBuilder &nb, Location nl, Value col, Value acc2) {
                                      SmallVector<Value> cols = clampedIndices(nb, nl, col, tile.columns, lastCol);
                                      return microKernel(nb, nl, a, w, acc2, rows, cols, k, kMain, partialVector,
                                                         tile.lanes);
                                    });
                  });
              scf::YieldOp::create(pb, pl, out);
            });
        markParallel(panels);
        scf::YieldOp::create(rb, rl, panels.getResults());
      });
  markParallel(rowBlocks);
  return rowBlocks.getResult(0);
}
