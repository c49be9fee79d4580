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
//   Two or more rows left over after whole MR-row tiles take one more MR-row
//   tile, a single row left over a 1-row tile (a decode step has one row
//   per expert); a tile that overhangs the rows or the block's columns
//   repeats its last row or column (computing and writing the same value
//   again) instead of a remainder kernel: two kernels to compile.
//
// A grouped contraction (each expert's rows times its weights) is one
// parallel loop over (column panel, expert) pairs, panels outermost: a
// static schedule gives every thread a run of panels of every expert, so
// the work is even however the rows are spread over the experts, and each
// expert's rows of the result are written in place.
//
// Quantised weights (moe.dequantize of 8-, 4- or 2-bit values, one scale per
// row or per block of a multiple of VL values) are dequantised in the
// kernel's loads, so the float weights never exist in memory (a decode step
// reads 1/4 or 1/8 of the f32 bytes). Unpacking, not memory, bounds these
// kernels, so 4- and 2-bit values are taken a field at a time: a step widens
// VL packed bytes of a weight row to 32-bit lanes once, and each field (a
// shift and a mask) is one vector of VL weights, k + pack·l + field, matched
// by a deinterleaved vector of each row of a (one shuffle per field for 4
// bits, three for 2 bits, shared by the tile's columns). With one f32 scale per row the dot product of the
// unscaled values is scaled once. Rows left after whole MR-row tiles take a
// tile of exactly their count, and a tile has as many columns as the
// registers hold (16 for one row): each weight row is 1 KiB for 2048 int4
// values, and the more rows a tile streams at once, the more of memory's
// latency overlaps.
//
// bf16 activations times bf16 weights, where the CPU has AVX512_BF16
// (VectorTiles512Bf16Dot), are not widened: each step reads 2·VL values of
// a row and of a weight row and one vdpbf16ps adds the two products of
// each pair to an f32 lane (x86vector.avx512.dot), half the instructions
// per value of a decode step's weights.
//
// The order of every sum is fixed at compile time and each output element
// is computed by one iteration: results do not depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"
#include "dialects/moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {

/// Register tile and vector length of a form.
struct TileShape {
  int64_t lanes;     // f32 lanes per vector register
  int64_t rows;      // MR
  int64_t columns;   // NR
  int64_t registers; // vector registers
};

TileShape tileShapeOf(ContractionForm form) {
  // MR·NR accumulators + MR rows of a + one row of w in flight: 29 of the 32
  // AVX-512 registers, 16 of the 16 AVX2 ones. Four rows of a (4·K f32)
  // stay in a 32 KiB L1 up to K = 2048; six (the transposed 6 x 4 tile)
  // measured 15-30% slower at K = 1024-2048.
  if (form == ContractionForm::VectorTiles256)
    return {8, 3, 4, 16};
  return {16, 4, 6, 32};
}

/// `count` bf16 values of row `row` of `t` from column `k`, as they are
/// (out-of-range values read 0 unless `inBounds`).
Value readBf16Row(OpBuilder &b, Location loc, Value t, Value row, Value k, int64_t count, bool inBounds) {
  Type bf16 = b.getBF16Type();
  Value pad = arith::ConstantOp::create(b, loc, b.getZeroAttr(bf16));
  return vector::TransferReadOp::create(b, loc, VectorType::get({count}, bf16), t, ValueRange{row, k}, pad,
                                        ArrayRef<bool>{inBounds});
}

/// Rows per parallel block: a block's rows reuse the column panel from L2.
constexpr int64_t kBlockRows = 64;
/// Bytes of weights one column panel should hold (half of a 1 MiB L2).
constexpr int64_t kPanelBytes = 512 * 1024;
/// Fewest column panels a contraction is split into (when N allows).
constexpr int64_t kMinPanels = 16;

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

/// Weights from their quantised values `q` (i32 lanes) of row `stored` of
/// expert `e` at column `k`: (q - zero) · scale, rounded through the
/// dequantize's element type as its own lowering rounds them; without
/// `scaled`, q - zero only (the kernel then scales each dot product once).
Value dequantizedLanes(OpBuilder &b, Location loc, DequantizeOp op, Value q, Value e, Value stored, Value k,
                       bool scaled) {
  auto vec = [&](Type t) { return VectorType::get(cast<VectorType>(q.getType()).getShape(), t); };
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  auto [zero, scale] = dequantizeParams(b, loc, op, e, stored, k);
  Value centred = arith::SIToFPOp::create(
      b, loc, vec(f32), arith::SubIOp::create(b, loc, q, vector::BroadcastOp::create(b, loc, vec(i32), zero)));
  if (!scaled)
    return centred;
  Value w = arith::MulFOp::create(b, loc, centred, vector::BroadcastOp::create(b, loc, vec(f32), scale));
  Type element = cast<RankedTensorType>(op.getType()).getElementType();
  if (element.isF32())
    return w;
  return arith::ExtFOp::create(b, loc, vec(f32), arith::TruncFOp::create(b, loc, vec(element), w).getResult());
}

/// `count` packed bytes of row `stored` of expert `e` from value `k`.
Value readPackedBytes(OpBuilder &b, Location loc, DequantizeOp op, Value e, Value stored, Value k, int64_t count) {
  Type i8 = b.getI8Type();
  Value byteAt = arith::DivUIOp::create(b, loc, k, constIndex(b, loc, op.getValuesPerByte()));
  Value pad = arith::ConstantOp::create(b, loc, b.getZeroAttr(i8));
  return vector::TransferReadOp::create(b, loc, VectorType::get({count}, i8), op.getPacked(),
                                        ValueRange{e, stored, byteAt}, pad, ArrayRef<bool>{true});
}

/// `lanes` consecutive weights of row `n` from column `k` of expert `e` of a
/// moe.dequantize, as f32 (dequantizedLanes). k is a multiple of `lanes`,
/// which divides the block size (canDequantizeInKernel).
Value readDequantizedRow(OpBuilder &b, Location loc, DequantizeOp op, Value e, Value n, Value k, int64_t lanes,
                         bool scaled) {
  int64_t bits = op.getBits(), pack = op.getValuesPerByte();
  // lanes / pack bytes hold the lanes values, low bits first.
  auto byteType = VectorType::get({lanes / pack}, b.getI8Type());
  Value stored = storedRow(b, loc, op, n);
  Value bytes = readPackedBytes(b, loc, op, e, stored, k, lanes / pack);
  // Value j of a byte: (byte >> j·bits) & mask; interleaving the j-th values
  // of all bytes restores the order (for 2 bits: pairs of pairs).
  auto field = [&](int64_t j) {
    Value shift = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(byteType, b.getI8IntegerAttr(j * bits).getValue()));
    Value mask = arith::ConstantOp::create(b, loc,
                                           DenseElementsAttr::get(byteType, b.getI8IntegerAttr((1 << bits) - 1).getValue()));
    return arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, bytes, shift), mask).getResult();
  };
  Value values;
  if (pack == 1)
    values = bytes;
  else if (pack == 2)
    values = vector::InterleaveOp::create(b, loc, field(0), field(1));
  else
    values = vector::InterleaveOp::create(b, loc, vector::InterleaveOp::create(b, loc, field(0), field(2)),
                                          vector::InterleaveOp::create(b, loc, field(1), field(3)));
  Value q = arith::ExtUIOp::create(b, loc, VectorType::get({lanes}, b.getI32Type()), values);
  return dequantizedLanes(b, loc, op, q, e, stored, k, scaled);
}

/// Field `field` of `lanes` packed bytes of row `n` of expert `e` from value
/// `k`: lane l is weight k + pack·l + field, as f32 (dequantizedLanes). Each
/// byte is widened to a 32-bit lane once and its fields are taken there, so a
/// step splits pack·lanes weights with a shift and a mask per field and no
/// byte shuffles; the rows of `a` are deinterleaved to match (stridedLanes).
Value readDequantizedField(OpBuilder &b, Location loc, DequantizeOp op, Value e, Value n, Value k, int64_t lanes,
                           int64_t field, bool scaled) {
  int64_t bits = op.getBits(), pack = op.getValuesPerByte();
  auto i32Lanes = VectorType::get({lanes}, b.getI32Type());
  auto splat = [&](int64_t v) {
    return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(i32Lanes, b.getI32IntegerAttr(v).getValue()));
  };
  Value stored = storedRow(b, loc, op, n);
  Value q = arith::ExtUIOp::create(b, loc, i32Lanes, readPackedBytes(b, loc, op, e, stored, k, lanes));
  if (field > 0)
    q = arith::ShRUIOp::create(b, loc, q, splat(field * bits));
  if (field < pack - 1)
    q = arith::AndIOp::create(b, loc, q, splat((1 << bits) - 1));
  return dequantizedLanes(b, loc, op, q, e, stored, k, scaled);
}

/// Lane l is value offset + stride·l of the concatenation of `parts`
/// (stride = parts.size(), a power of two): halves the stride per level,
/// a shuffle per pair of vectors.
Value stridedLanes(OpBuilder &b, Location loc, ArrayRef<Value> parts, int64_t offset) {
  if (parts.size() == 1)
    return parts.front();
  int64_t lanes = cast<VectorType>(parts.front().getType()).getNumElements();
  SmallVector<int64_t> mask;
  for (int64_t l = 0; l < lanes; ++l)
    mask.push_back(2 * l + offset % 2);
  SmallVector<Value> halves;
  for (size_t i = 0; i < parts.size(); i += 2)
    halves.push_back(vector::ShuffleOp::create(b, loc, parts[i], parts[i + 1], mask));
  return stridedLanes(b, loc, halves, offset / 2);
}

/// What every tile of one contraction shares: its tile shape, the k loop's
/// bounds and the columns of a panel, and how quantised weights are read.
struct KernelPlan {
  TileShape tile;
  Value k, kMain;
  bool partialVector, bf16Dot;
  int64_t panel;
  /// Quantised weights read a field of each packed byte per vector
  /// (readDequantizedField): values per byte; 1 when read in order.
  int64_t fields = 1;
  /// Quantised weights with one f32 scale per row: the dot product of the
  /// unscaled values is scaled once, after the sum.
  bool scaleAfterSum = false;
  /// Rows left after whole MR-row tiles take a tile of exactly their count
  /// (quantised weights, whose unpacking costs more than the memory it
  /// reads) rather than an overhanging MR-row tile and single rows.
  bool exactRowTiles = false;
};

/// Row `n` of the weights from column `k`, `lanes` values as f32.
Value readWeightRow(OpBuilder &b, Location loc, const KernelPlan &plan, WeightSource w, Value n, Value k,
                    bool inBounds) {
  if (w.quantized)
    return readDequantizedRow(b, loc, w.quantized, w.expert, n, k, plan.tile.lanes, !plan.scaleAfterSum);
  return readRow(b, loc, w.tensor, n, k, plan.tile.lanes, inBounds);
}

/// out[r, c] = a[r, :] · w[c, :] for the rows and columns given. A k step
/// covers `lanes` values, 2·lanes for bf16 dot products, fields·lanes for
/// quantised weights read by field (every field of the step's bytes is one
/// vector of w and one deinterleaved vector of each row of a).
Value microKernel(OpBuilder &b, Location loc, const KernelPlan &plan, Value a, WeightSource w, Value out,
                  ArrayRef<Value> rowIndex, ArrayRef<Value> colIndex) {
  int64_t rows = rowIndex.size(), cols = colIndex.size(), lanes = plan.tile.lanes, fields = plan.fields;
  bool bf16Dot = plan.bf16Dot;
  int64_t step = bf16Dot ? 2 * lanes : fields * lanes;
  auto accType = VectorType::get({lanes}, b.getF32Type());
  Value zero = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(accType, 0.0f));
  SmallVector<Value> init(rows * cols, zero);
  // The stored row of each column's weights.
  SmallVector<Value> wRowIndex(colIndex);
  if (w.interleavedRows) {
    Value storedRows = tensor::DimOp::create(b, loc, w.tensor, 0);
    for (Value &row : wRowIndex)
      row = interleavedRow(b, loc, row, storedRows);
  }

  auto steps = [&](Value from, Value to, ValueRange acc, bool inBounds) -> ValueRange {
    return scf::ForOp::create(
               b, loc, from, to, constIndex(b, loc, step), acc,
               [&](OpBuilder &kb, Location kl, Value kk, ValueRange sums) {
                 SmallVector<Value> next(sums.begin(), sums.end());
                 // aFields[i·fields + f]: field f's values of row i. All
                 // fields of a row, then of a weight row, are split at once,
                 // so the raw vectors die before the next ones are read.
                 SmallVector<Value> aFields;
                 for (int64_t i = 0; i < rows; ++i) {
                   if (bf16Dot) {
                     aFields.push_back(readBf16Row(kb, kl, a, rowIndex[i], kk, step, inBounds));
                     continue;
                   }
                   SmallVector<Value> parts;
                   for (int64_t p = 0; p < fields; ++p) {
                     Value at = arith::AddIOp::create(kb, kl, kk, constIndex(kb, kl, p * lanes));
                     parts.push_back(readRow(kb, kl, a, rowIndex[i], at, lanes, inBounds));
                   }
                   for (int64_t f = 0; f < fields; ++f)
                     aFields.push_back(stridedLanes(kb, kl, parts, f));
                 }
                 for (int64_t j = 0; j < cols; ++j) {
                   SmallVector<Value> wFields;
                   if (bf16Dot)
                     wFields.push_back(readBf16Row(kb, kl, w.tensor, wRowIndex[j], kk, step, inBounds));
                   else if (fields > 1)
                     for (int64_t f = 0; f < fields; ++f)
                       wFields.push_back(readDequantizedField(kb, kl, w.quantized, w.expert, colIndex[j], kk, lanes,
                                                              f, !plan.scaleAfterSum));
                   else
                     wFields.push_back(readWeightRow(kb, kl, plan, w, wRowIndex[j], kk, inBounds));
                   for (int64_t f = 0; f < fields; ++f)
                     for (int64_t i = 0; i < rows; ++i) {
                       Value &acc = next[i * cols + j];
                       Value aField = aFields[i * fields + f];
                       acc = bf16Dot
                                 ? x86vector::DotBF16Op::create(kb, kl, accType, acc, aField, wFields[f]).getResult()
                                 : vector::FMAOp::create(kb, kl, aField, wFields[f], acc).getResult();
                     }
                 }
                 scf::YieldOp::create(kb, kl, next);
               })
        .getResults();
  };
  // Whole vectors, then at most one masked partial one.
  ValueRange sums = steps(constIndex(b, loc, 0), plan.kMain, init, /*inBounds=*/true);
  if (plan.partialVector)
    sums = steps(plan.kMain, plan.k, sums, /*inBounds=*/false);

  for (int64_t j = 0; j < cols; ++j) {
    Value scale;
    if (plan.scaleAfterSum) {
      DequantizeOp op = w.quantized;
      scale = dequantizeParams(b, loc, op, w.expert, storedRow(b, loc, op, colIndex[j]), constIndex(b, loc, 0)).second;
    }
    for (int64_t i = 0; i < rows; ++i) {
      Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, sums[i * cols + j],
                                              arith::FastMathFlags::reassoc);
      if (scale)
        sum = arith::MulFOp::create(b, loc, sum, scale);
      out = tensor::InsertOp::create(b, loc, sum, out, ValueRange{rowIndex[i], colIndex[j]});
    }
  }
  return out;
}

} // namespace

bool lowering::canDequantizeInKernel(DequantizeOp op, ContractionForm form) {
  int64_t lanes = tileShapeOf(form).lanes;
  int64_t k = cast<RankedTensorType>(op.getType()).getDimSize(2), blockSize = op.getBlockSize();
  // Whole vectors only (no masked packed reads), each inside one block.
  return form != ContractionForm::Parallel && !ShapedType::isDynamic(k) && k % lanes == 0 &&
         (blockSize == 0 || blockSize % lanes == 0);
}

namespace {

/// The weights' [N, K] shape, bytes per value and element type, read from a
/// plain [N, K] tensor, a stack of them ([E, N, K]) or a moe.dequantize.
struct WeightShape {
  int64_t staticN, staticK;
  double valueBytes;
  Value n;
  Type element;
  DequantizeOp quantized;
};

WeightShape shapeOfWeights(OpBuilder &b, Location loc, Value stackedOrPlain, DequantizeOp quantized) {
  if (quantized) {
    auto type = cast<RankedTensorType>(quantized.getType());
    return {type.getDimSize(1), type.getDimSize(2), double(quantized.getBits()) / 8,
            dequantizedDims(b, loc, quantized)[1], type.getElementType(), quantized};
  }
  auto type = cast<RankedTensorType>(stackedOrPlain.getType());
  unsigned nDim = type.getRank() - 2;
  return {type.getDimSize(nDim), type.getDimSize(nDim + 1), double(type.getElementTypeBitWidth()) / 8,
          dimsOf(b, loc, stackedOrPlain)[nDim], type.getElementType(), nullptr};
}

/// Columns of a register tile of `rows` rows. Quantised weights' tiles take
/// as many columns as the registers hold (accumulators, each row's fields,
/// a weight row's fields and three constants), up to 16, a power of two:
/// their rows are short streams (1 KiB for 2048 int4 values), and the more
/// of them a tile reads at once, the more of memory's latency overlaps.
int64_t columnsOfTile(const KernelPlan &plan, int64_t rows) {
  if (!plan.exactRowTiles)
    return plan.tile.columns;
  int64_t free = plan.tile.registers - 3 - plan.fields * (rows + 1);
  return int64_t(llvm::bit_floor(uint64_t(std::clamp<int64_t>(free / rows, 1, 16))));
}

KernelPlan planKernel(OpBuilder &b, Location loc, Value a, const WeightShape &w, ContractionForm form) {
  KernelPlan plan;
  plan.tile = tileShapeOf(form);
  auto aType = cast<RankedTensorType>(a.getType());
  plan.bf16Dot = form == ContractionForm::VectorTiles512Bf16Dot && !w.quantized &&
                 aType.getElementType().isBF16() && w.element.isBF16();
  // int4 and int2 values are taken a field of their bytes at a time when
  // every step's pack·lanes values lie in one block.
  int64_t staticK = aType.getDimSize(1);
  if (DequantizeOp q = w.quantized) {
    int64_t span = q.getValuesPerByte() * plan.tile.lanes, blockSize = q.getBlockSize();
    if (!ShapedType::isDynamic(staticK) && staticK % span == 0 && (blockSize == 0 || blockSize % span == 0))
      plan.fields = q.getValuesPerByte();
    plan.scaleAfterSum = blockSize == 0 && w.element.isF32();
    plan.exactRowTiles = true;
  }
  int64_t step = plan.bf16Dot ? 2 * plan.tile.lanes : plan.fields * plan.tile.lanes;
  plan.k = dimsOf(b, loc, a)[1];
  Value stepSize = constIndex(b, loc, step);
  plan.kMain = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, plan.k, stepSize), stepSize);
  // A static k tells whether a partial vector is left.
  plan.partialVector = ShapedType::isDynamic(staticK) || staticK % step != 0;

  // Columns per panel: a multiple of NR whose weights fill about kPanelBytes.
  int64_t columns = columnsOfTile(plan, plan.tile.rows);
  plan.panel = 8 * columns;
  if (!ShapedType::isDynamic(w.staticK)) {
    int64_t rowBytes = std::max<int64_t>(int64_t(w.staticK * w.valueBytes), 1);
    plan.panel = std::clamp<int64_t>(kPanelBytes / rowBytes / columns, 1, 32) * columns;
  }
  // At least kMinPanels panels, so that a few rows (decode) still spread
  // evenly over the threads.
  if (!ShapedType::isDynamic(w.staticN))
    plan.panel = std::min(
        plan.panel,
        std::max<int64_t>(llvm::divideCeil(llvm::divideCeil(w.staticN, kMinPanels), columns), 1) * columns);
  return plan;
}

/// out[r, c] = a[r, :] · w[c, :] for rows [m0, mEnd) and columns [n0, nEnd)
/// of one panel; other elements of out unchanged.
Value rowsTimesPanel(OpBuilder &b, Location loc, const KernelPlan &plan, Value a, WeightSource w, Value out,
                     Value m0, Value mEnd, Value n0, Value nEnd) {
  const TileShape &tile = plan.tile;
  Value one = constIndex(b, loc, 1);
  Value lastRow = arith::SubIOp::create(b, loc, mEnd, one);
  Value lastCol = arith::SubIOp::create(b, loc, nEnd, one);
  auto rowTiles = [&](OpBuilder &rb, Location rl, Value from, Value to, int64_t rows, Value init) {
    return tileLoop(rb, rl, from, to, rows, init, [&](OpBuilder &mb, Location ml, Value row, Value acc) {
      SmallVector<Value> rowIndex = clampedIndices(mb, ml, row, rows, lastRow);
      int64_t columns = columnsOfTile(plan, rows);
      return tileLoop(mb, ml, n0, nEnd, columns, acc, [&](OpBuilder &nb, Location nl, Value col, Value acc2) {
        SmallVector<Value> cols = clampedIndices(nb, nl, col, columns, lastCol);
        return microKernel(nb, nl, plan, a, w, acc2, rowIndex, cols);
      });
    });
  };
  Value tileRows = constIndex(b, loc, tile.rows);
  Value count = arith::SubIOp::create(b, loc, mEnd, m0);
  if (plan.exactRowTiles) {
    // Whole MR-row tiles, then one tile of exactly the rows left: every
    // row's FMAs are done once, each weight is unpacked once per tile.
    Value tiledEnd = arith::AddIOp::create(
        b, loc, m0, arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, count, tileRows), tileRows));
    out = rowTiles(b, loc, m0, tiledEnd, tile.rows, out);
    Value left = arith::SubIOp::create(b, loc, mEnd, tiledEnd);
    std::function<Value(OpBuilder &, Location, int64_t)> remainder = [&](OpBuilder &ib, Location il,
                                                                         int64_t rows) -> Value {
      if (rows == 0)
        return out;
      Value matches = arith::CmpIOp::create(ib, il, arith::CmpIPredicate::eq, left, constIndex(ib, il, rows));
      auto choice = scf::IfOp::create(
          ib, il, matches,
          [&](OpBuilder &tb, Location tl) {
            scf::YieldOp::create(tb, tl, rowTiles(tb, tl, tiledEnd, mEnd, rows, out));
          },
          [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, remainder(eb, el, rows - 1)); });
      return choice.getResult(0);
    };
    return remainder(b, loc, tile.rows - 1);
  }
  // MR-row tiles, the last one overhanging when two or more rows are left
  // (each extra pass over the panel costs more than the repeated rows'
  // FMAs), then a single row: a decode step's one row per expert does not
  // pay MR rows of FMAs.
  Value twoOrMoreLeft = constIndex(b, loc, tile.rows - 2);
  Value tiles = arith::DivUIOp::create(b, loc, arith::AddIOp::create(b, loc, count, twoOrMoreLeft), tileRows);
  Value tiledEnd = arith::MinUIOp::create(
      b, loc, arith::AddIOp::create(b, loc, m0, arith::MulIOp::create(b, loc, tiles, tileRows)), mEnd);
  out = rowTiles(b, loc, m0, tiledEnd, tile.rows, out);
  return rowTiles(b, loc, tiledEnd, mEnd, 1, out);
}

} // namespace

Value lowering::tiledLinearF32(OpBuilder &b, Location loc, Value a, WeightSource w, ContractionForm form) {
  WeightShape shape = shapeOfWeights(b, loc, w.tensor, w.quantized);
  KernelPlan plan = planKernel(b, loc, a, shape, form);
  auto aType = cast<RankedTensorType>(a.getType());
  auto outType = RankedTensorType::get({aType.getDimSize(0), shape.staticN}, b.getF32Type());
  Value m = dimsOf(b, loc, a)[0], n = shape.n;
  Value init = zeros(b, loc, outType, {m, n});
  Value zero = constIndex(b, loc, 0);
  Value panelSize = constIndex(b, loc, plan.panel), blockRows = constIndex(b, loc, kBlockRows);

  auto rowBlocks = scf::ForOp::create(
      b, loc, zero, m, blockRows, ValueRange{init},
      [&](OpBuilder &rb, Location rl, Value m0, ValueRange rowIter) {
        auto panels = scf::ForOp::create(
            rb, rl, zero, n, panelSize, rowIter, [&](OpBuilder &pb, Location pl, Value n0, ValueRange iter) {
              Value mEnd = arith::MinUIOp::create(pb, pl, arith::AddIOp::create(pb, pl, m0, blockRows), m);
              Value nEnd = arith::MinUIOp::create(pb, pl, arith::AddIOp::create(pb, pl, n0, panelSize), n);
              scf::YieldOp::create(pb, pl, rowsTimesPanel(pb, pl, plan, a, w, iter[0], m0, mEnd, n0, nEnd));
            });
        markParallel(panels);
        scf::YieldOp::create(rb, rl, panels.getResults());
      });
  markParallel(rowBlocks);
  return rowBlocks.getResult(0);
}

Value lowering::tiledGroupedLinearF32(OpBuilder &b, Location loc, Value a, Value out, Value groups,
                                      Value stackedWeights, DequantizeOp quantized,
                                      function_ref<std::pair<Value, Value>(OpBuilder &, Location, Value)> rowsOf,
                                      function_ref<WeightSource(OpBuilder &, Location, Value)> weightOf,
                                      ContractionForm form) {
  WeightShape shape = shapeOfWeights(b, loc, stackedWeights, quantized);
  KernelPlan plan = planKernel(b, loc, a, shape, form);
  Value zero = constIndex(b, loc, 0), one = constIndex(b, loc, 1);
  Value n = shape.n;
  Value panelSize = constIndex(b, loc, plan.panel), blockRows = constIndex(b, loc, kBlockRows);
  // Panels outside, groups inside: a static schedule gives each thread a
  // run of panels of every group, so work stays balanced however unevenly
  // the rows are spread over the groups.
  auto panels = scf::ForOp::create(
      b, loc, zero, n, panelSize, ValueRange{out}, [&](OpBuilder &pb, Location pl, Value n0, ValueRange panelIter) {
        auto perGroup = scf::ForOp::create(
            pb, pl, zero, groups, one, panelIter, [&](OpBuilder &gb, Location gl, Value g, ValueRange iter) {
              // Computed here, not per panel: the panel loop's body must be
              // the group loop alone to merge with it into one 2-D loop.
              Value nEnd = arith::MinUIOp::create(gb, gl, arith::AddIOp::create(gb, gl, n0, panelSize), n);
              auto [lo, hi] = rowsOf(gb, gl, g);
              WeightSource w = weightOf(gb, gl, g);
              // Blocks of rows reuse the panel from L2.
              auto blocks = scf::ForOp::create(
                  gb, gl, lo, hi, blockRows, iter, [&](OpBuilder &rb, Location rl, Value m0, ValueRange acc) {
                    Value mEnd = arith::MinUIOp::create(rb, rl, arith::AddIOp::create(rb, rl, m0, blockRows), hi);
                    scf::YieldOp::create(rb, rl, rowsTimesPanel(rb, rl, plan, a, w, acc[0], m0, mEnd, n0, nEnd));
                  });
              scf::YieldOp::create(gb, gl, blocks.getResults());
            });
        markParallel(perGroup);
        scf::YieldOp::create(pb, pl, perGroup.getResults());
      });
  markParallel(panels);
  return panels.getResult(0);
}
