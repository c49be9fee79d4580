//===- RaisingCheck.cpp - raised MoE layers checked against their own ops -===//
//
// A moe.raising_check holds a recognised layer and the ops it was
// recognised in. Both computations are copied into one function whose
// inputs (the values both read) are random, compiled for this CPU and run;
// the layer stays where the two agree (RaisingCheck.h has the rule).
//
//===----------------------------------------------------------------------===//

#include "moe/Tools/RaisingCheck.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Tools/CpuTarget.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/Support/TargetSelect.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>

using namespace mlir;
using namespace mlir::moe;
namespace tb = mlir::moe::tensor_builders;

namespace {
/// Every dynamic size of an input (one size for all: sizes that must agree do).
constexpr int64_t kDynamicSize = 24;
/// Float constants with at least this many elements are weights: random.
constexpr int64_t kLargeConstant = 4096;
constexpr const char *kCheckFunction = "moe_raising_check";
/// How long the two draws may run.
constexpr int kRunSeconds = 120;

/// How the check function gets a value both computations read.
enum class Source { Random, RandomWeight, Copy, Zero, Producer };

/// What one draw measured: rows that differ, rows, and the sums of squared
/// differences and of squared original values.
struct Draw {
  float differing = 0, rows = 0, error2 = 0, norm2 = 0;
};

bool isFloatTensor(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && isa<FloatType>(tensor.getElementType());
}

/// When a result's rows differ, by its element type: a row beyond
/// `tolerance` (relative) differs; more than one row in `rowsPerTie` is
/// more than routing near a tie explains (16-bit scores tie more often).
struct RowRule {
  double tolerance;
  float rowsPerTie;
};

RowRule ruleFor(Type type) {
  Type element = cast<RankedTensorType>(type).getElementType();
  bool sixteenBit = element.isF16() || element.isBF16();
  return sixteenBit ? RowRule{4e-2, 8.0f} : RowRule{1e-3, 64.0f};
}

/// The values `op` reads: its operands and what its regions use from above.
SmallVector<Value> readsOf(Operation *op) {
  SmallVector<Value> reads(op->getOperands());
  llvm::SetVector<Value> above;
  getUsedValuesDefinedAbove(op->getRegions(), above);
  llvm::append_range(reads, above);
  return reads;
}

/// The ops of `block` that `root` needs, transitively; values from outside
/// `block` end the walk.
void sliceInBlock(Value root, Block *block, llvm::SetVector<Operation *> &ops) {
  SmallVector<Value> work = {root};
  while (!work.empty()) {
    Operation *def = work.pop_back_val().getDefiningOp();
    if (!def || def->getBlock() != block || !ops.insert(def))
      continue;
    llvm::append_range(work, readsOf(def));
  }
}

SmallVector<Operation *> inBlockOrder(ArrayRef<Operation *> ops) {
  SmallVector<Operation *> sorted(ops);
  llvm::sort(sorted, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  return sorted;
}

SmallVector<int64_t> staticShape(RankedTensorType type) {
  SmallVector<int64_t> shape;
  for (int64_t d : type.getShape())
    shape.push_back(ShapedType::isDynamic(d) ? kDynamicSize : d);
  return shape;
}

Value i64Const(OpBuilder &b, Location loc, uint64_t value) {
  return scalar::intConst(b, loc, b.getI64Type(), static_cast<int64_t>(value));
}

/// A tensor of `type` (dynamic sizes kDynamicSize) of uniform values with
/// unit variance times `scale`: splitmix64 of (seed, salt, element index).
Value randomTensor(OpBuilder &b, Location loc, RankedTensorType type, Value seed, int64_t salt, double scale) {
  SmallVector<int64_t> shape = staticShape(type);
  auto staticType = RankedTensorType::get(shape, type.getElementType());
  Value init = tensor::EmptyOp::create(b, loc, shape, type.getElementType());
  int64_t rank = type.getRank();
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank)};
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{staticType}, ValueRange{}, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location l, ValueRange) {
        Value linear = i64Const(nb, l, 0);
        for (int64_t d = 0; d < rank; ++d) {
          Value index = arith::IndexCastOp::create(nb, l, nb.getI64Type(), linalg::IndexOp::create(nb, l, d));
          linear = arith::AddIOp::create(nb, l, arith::MulIOp::create(nb, l, linear, i64Const(nb, l, shape[d])), index);
        }
        Value z = arith::AddIOp::create(nb, l, arith::MulIOp::create(nb, l, seed, i64Const(nb, l, 0x9E3779B97F4A7C15ULL)),
                                        i64Const(nb, l, uint64_t(salt + 1) * 0xD1B54A32D192ED03ULL));
        z = arith::AddIOp::create(nb, l, z, linear);
        auto mix = [&](Value v, unsigned shift, uint64_t multiplier) -> Value {
          Value shifted = arith::ShRUIOp::create(nb, l, v, i64Const(nb, l, shift));
          Value x = arith::XOrIOp::create(nb, l, v, shifted);
          return multiplier ? Value(arith::MulIOp::create(nb, l, x, i64Const(nb, l, multiplier))) : x;
        };
        z = mix(mix(mix(z, 30, 0xBF58476D1CE4E5B9ULL), 27, 0x94D049BB133111EBULL), 31, 0);
        // 24 random bits -> [0, 1) -> [-sqrt(3), sqrt(3)) * scale.
        Value bits = arith::ShRUIOp::create(nb, l, z, i64Const(nb, l, 40));
        Value unit = arith::MulFOp::create(nb, l, arith::UIToFPOp::create(nb, l, nb.getF32Type(), bits),
                                           scalar::constF32(nb, l, 1.0 / 16777216.0));
        Value centred = arith::SubFOp::create(nb, l, arith::MulFOp::create(nb, l, unit, scalar::constF32(nb, l, 2.0)),
                                              scalar::constF32(nb, l, 1.0));
        Value value = arith::MulFOp::create(nb, l, centred, scalar::constF32(nb, l, std::sqrt(3.0) * scale));
        linalg::YieldOp::create(nb, l, tb::castScalar(nb, l, value, type.getElementType()));
      });
  Value result = generic.getResult(0);
  return staticType == type ? result : Value(tensor::CastOp::create(b, loc, type, result));
}

/// An all-zero tensor of `type` (dynamic sizes kDynamicSize).
Value zeroTensor(OpBuilder &b, Location loc, RankedTensorType type) {
  auto staticType = RankedTensorType::get(staticShape(type), type.getElementType());
  Value zeros = arith::ConstantOp::create(b, loc, b.getZeroAttr(staticType));
  return staticType == type ? zeros : Value(tensor::CastOp::create(b, loc, type, zeros));
}

/// `x` summed over every dimension, as a scalar.
Value total(OpBuilder &b, Location loc, Value x) {
  int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
  for (int64_t axis = 0; axis < rank; ++axis)
    x = tb::reduceAxis(b, loc, x, axis, tb::Reduction::Sum);
  SmallVector<Value> zeros(rank, scalar::constIndex(b, loc, 0));
  return tensor::ExtractOp::create(b, loc, x, zeros);
}

/// (rows that differ, rows, sum of squared differences, sum of squares of
/// `original`) of `raised` against `original`, rows along the last dim.
SmallVector<Value> compare(OpBuilder &b, Location loc, Value raised, Value original, double tolerance) {
  Type f32 = b.getF32Type();
  Value r = tb::castTensor(b, loc, raised, f32), o = tb::castTensor(b, loc, original, f32);
  Value error2 = *tb::elementwise(b, loc, {r, o}, f32, [](OpBuilder &nb, Location l, ValueRange v) -> Value {
    Value d = arith::SubFOp::create(nb, l, v[0], v[1]);
    return arith::MulFOp::create(nb, l, d, d);
  });
  Value norm2 = *tb::elementwise(b, loc, {o}, f32, [](OpBuilder &nb, Location l, ValueRange v) -> Value {
    return arith::MulFOp::create(nb, l, v[0], v[0]);
  });
  int64_t rank = cast<RankedTensorType>(r.getType()).getRank();
  Value rowError2 = rank ? tb::reduceAxis(b, loc, error2, rank - 1, tb::Reduction::Sum) : error2;
  Value rowNorm2 = rank ? tb::reduceAxis(b, loc, norm2, rank - 1, tb::Reduction::Sum) : norm2;
  double tolerance2 = tolerance * tolerance;
  // Unordered: a NaN on either side is a difference.
  Value differs = *tb::elementwise(b, loc, {rowError2, rowNorm2}, f32, [&](OpBuilder &nb, Location l, ValueRange v) -> Value {
    Value bound = arith::AddFOp::create(nb, l, arith::MulFOp::create(nb, l, v[1], scalar::constF32(nb, l, tolerance2)),
                                        scalar::constF32(nb, l, 1e-30));
    Value over = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::UGT, v[0], bound);
    return arith::SelectOp::create(nb, l, over, scalar::constF32(nb, l, 1.0), scalar::constF32(nb, l, 0.0));
  });
  Value ones = *tb::elementwise(b, loc, {rowError2}, f32, [](OpBuilder &nb, Location l, ValueRange) -> Value {
    return scalar::constF32(nb, l, 1.0);
  });
  return {total(b, loc, differs), total(b, loc, ones), total(b, loc, error2), total(b, loc, norm2)};
}

/// The symbols (functions) the ops under `root` call, copied from `source`
/// into `target`, transitively.
void copyCalledSymbols(Operation *root, ModuleOp source, ModuleOp target) {
  SmallVector<Operation *> work = {root};
  SymbolTable sourceSymbols(source), targetSymbols(target);
  while (!work.empty()) {
    Operation *next = work.pop_back_val();
    next->walk([&](Operation *op) {
      for (NamedAttribute attr : op->getAttrs()) {
        auto ref = dyn_cast<FlatSymbolRefAttr>(attr.getValue());
        if (!ref || targetSymbols.lookup(ref.getValue()))
          continue;
        if (Operation *symbol = sourceSymbols.lookup(ref.getValue())) {
          Operation *copy = symbol->clone();
          targetSymbols.insert(copy);
          work.push_back(copy);
        }
      }
    });
  }
}

/// The check function for one moe.raising_check, or a reason it cannot be
/// built.
class CheckBuilder {
public:
  CheckBuilder(RaisingCheckOp check) : check(check), block(check->getBlock()) {}

  /// A module with `moe_raising_check(seed: i64) -> (f32 x 4)`.
  FailureOr<OwningOpRef<ModuleOp>> build(std::string &why) {
    llvm::SetVector<Operation *> raisedOps, originalOps;
    sliceInBlock(check.getRaised(), block, raisedOps);
    sliceInBlock(check.getOriginal(), block, originalOps);
    llvm::SetVector<Operation *> exclusive;
    for (Operation *op : raisedOps)
      if (!originalOps.contains(op))
        exclusive.insert(op);
    for (Operation *op : originalOps)
      if (!raisedOps.contains(op))
        exclusive.insert(op);
    for (Operation *op : exclusive)
      for (Value read : readsOf(op))
        if (!exclusive.contains(read.getDefiningOp()) && failed(classify(read, why)))
          return failure();
    if (failed(deriveDependentInputs(why)))
      return failure();

    Location loc = check.getLoc();
    OpBuilder b(check.getContext());
    OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
    b.setInsertionPointToEnd(module->getBody());
    Type f32 = b.getF32Type();
    auto func = func::FuncOp::create(b, loc, kCheckFunction,
                                     b.getFunctionType({b.getI64Type()}, {f32, f32, f32, f32}));
    Block *entry = func.addEntryBlock();
    b.setInsertionPointToEnd(entry);
    Value seed = entry->getArgument(0);
    IRMapping map;
    int64_t salt = 0;
    for (auto [value, source] : sources) {
      auto type = dyn_cast<RankedTensorType>(value.getType());
      switch (source) {
      case Source::Random:
        map.map(value, randomTensor(b, loc, type, seed, salt++, 1.0));
        break;
      case Source::RandomWeight: {
        ArrayRef<int64_t> shape = type.getShape();
        int64_t fan = shape.size() >= 2 ? std::max(shape[shape.size() - 1], shape[shape.size() - 2]) : shape.back();
        map.map(value, randomTensor(b, loc, type, seed, salt++, 1.0 / std::sqrt(double(std::max<int64_t>(fan, 1)))));
        break;
      }
      case Source::Copy:
        b.clone(*value.getDefiningOp(), map);
        break;
      case Source::Zero:
        map.map(value, zeroTensor(b, loc, type));
        break;
      case Source::Producer:
        break;
      }
    }
    for (Operation *op : inBlockOrder(producers.getArrayRef()))
      b.clone(*op, map);
    for (Operation *op : inBlockOrder(exclusive.getArrayRef()))
      b.clone(*op, map);
    Value raised = map.lookupOrDefault(check.getRaised()), original = map.lookupOrDefault(check.getOriginal());
    func::ReturnOp::create(b, loc, compare(b, loc, raised, original, ruleFor(raised.getType()).tolerance));
    copyCalledSymbols(func, check->getParentOfType<ModuleOp>(), *module);
    return module;
  }

private:
  /// Decides how the check function gets `value` (and what it needs for it).
  LogicalResult classify(Value value, std::string &why) {
    SmallVector<Value> work = {value};
    while (!work.empty()) {
      Value v = work.pop_back_val();
      if (sources.count(v))
        continue;
      auto tensor = dyn_cast<RankedTensorType>(v.getType());
      Operation *def = v.getDefiningOp();
      if (def && def->hasTrait<OpTrait::ConstantLike>()) {
        bool weight = tensor && tensor.hasStaticShape() && isFloatTensor(tensor) &&
                      tensor.getNumElements() >= kLargeConstant;
        sources[v] = weight ? Source::RandomWeight : Source::Copy;
      }
      else if (isFloatTensor(v.getType())) {
        sources[v] = Source::Random;
      }
      else if (def && def->getBlock() == block) {
        sources[v] = Source::Producer;
        producers.insert(def);
        llvm::append_range(work, readsOf(def));
      }
      else if (tensor && tensor.getElementType().isIntOrIndex()) {
        sources[v] = Source::Zero;
      }
      else {
        std::string type;
        llvm::raw_string_ostream os(type);
        os << v.getType();
        why = "both read a " + type + " from outside the layer's block, which random inputs cannot stand for";
        return failure();
      }
    }
    return success();
  }

  /// A random input computed from another one in the program (two
  /// copies of one normalisation, x and its norm) would lose that relation:
  /// it is computed from the other instead, by copies of its ops.
  LogicalResult deriveDependentInputs(std::string &why) {
    for (bool changed = true; changed;) {
      changed = false;
      llvm::DenseSet<Value> random;
      for (auto [value, source] : sources)
        if (source == Source::Random || source == Source::RandomWeight)
          random.insert(value);
      for (Value input : random) {
        Operation *def = input.getDefiningOp();
        if (!def || def->getBlock() != block || !readsAnother(input, random))
          continue;
        sources[input] = Source::Producer;
        producers.insert(def);
        for (Value read : readsOf(def))
          if (failed(classify(read, why)))
            return failure();
        changed = true;
        break;
      }
    }
    return success();
  }

  /// Whether `input` is computed (within the block) from another of `inputs`.
  bool readsAnother(Value input, const llvm::DenseSet<Value> &inputs) {
    SmallVector<Value> work = readsOf(input.getDefiningOp());
    llvm::DenseSet<Value> seen;
    while (!work.empty()) {
      Value v = work.pop_back_val();
      if (!seen.insert(v).second)
        continue;
      if (inputs.contains(v))
        return true;
      if (Operation *def = v.getDefiningOp(); def && def->getBlock() == block)
        llvm::append_range(work, readsOf(def));
    }
    return false;
  }

  RaisingCheckOp check;
  Block *block;
  llvm::MapVector<Value, Source> sources;
  llvm::SetVector<Operation *> producers;
};

/// Runs the compiled check function on `seeds` in a child process: the
/// ops a layer was recognised in may hold for the traced input sizes only
/// (a TorchScript trace's constants), and on others read or write out of
/// bounds; that must not take the compiler down.
FailureOr<SmallVector<Draw>> runIsolated(void (*entry)(void **), ArrayRef<int64_t> seeds, std::string &why) {
  int fds[2];
  if (pipe(fds) != 0) {
    why = "cannot create a pipe";
    return failure();
  }
  llvm::outs().flush();
  llvm::errs().flush();
  pid_t child = fork();
  if (child < 0) {
    close(fds[0]);
    close(fds[1]);
    why = "cannot fork";
    return failure();
  }
  if (child == 0) {
    close(fds[0]);
    // A crash here is an answer, not a report: no LLVM stack dump, no
    // glibc message on the user's terminal.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE})
      signal(sig, SIG_DFL);
    if (int null = open("/dev/null", O_WRONLY); null >= 0)
      dup2(null, STDERR_FILENO);
    for (int64_t seed : seeds) {
      Draw draw;
      void *args[] = {&seed, &draw};
      entry(args);
      if (write(fds[1], &draw, sizeof(draw)) != ssize_t(sizeof(draw)))
        _exit(2);
    }
    _exit(0);
  }
  close(fds[1]);
  SmallVector<Draw> draws(seeds.size());
  size_t want = sizeof(Draw) * seeds.size(), got = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kRunSeconds);
  while (got < want) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd poller = {fds[0], POLLIN, 0};
    if (left.count() <= 0 || poll(&poller, 1, int(left.count())) <= 0)
      break;
    ssize_t n = read(fds[0], reinterpret_cast<char *>(draws.data()) + got, want - got);
    if (n <= 0)
      break;
    got += size_t(n);
  }
  close(fds[0]);
  if (got < want)
    kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  if (got < want) {
    why = WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL
              ? "the comparison died of signal " + std::to_string(WTERMSIG(status)) +
                    " (the recognised ops may hold only for the input sizes the model was traced with)"
              : "the comparison did not finish within " + std::to_string(kRunSeconds) + " s";
    return failure();
  }
  return draws;
}

/// Lowers `module` for this CPU, JIT-compiles it and runs the check
/// function on `seeds`.
FailureOr<SmallVector<Draw>> run(ModuleOp module, ArrayRef<int64_t> seeds, std::string &why) {
  MLIRContext *context = module.getContext();
  std::string error;
  std::unique_ptr<llvm::TargetMachine> machine = createCpuTargetMachine("host", error);
  if (!machine) {
    why = error;
    return failure();
  }
  PassManager pm(context);
  MoeCpuPipelineOptions options;
  options.openmp = false;
  options.vectorBits = preferredVectorBits(*machine);
  options.bf16DotProducts = hasBf16DotProducts(*machine);
  buildMoeCpuPipeline(pm, options);
  if (failed(pm.run(module))) {
    why = "lowering failed";
    return failure();
  }
  ExecutionEngineOptions engineOptions;
  std::function<llvm::Error(llvm::Module *)> transform = [&](llvm::Module *m) {
    return optimizeHostModule(*m, machine.get());
  };
  engineOptions.transformer = transform;
  std::string runnerUtils = MOE_C_RUNNER_UTILS;
  SmallVector<StringRef> libraries = {runnerUtils};
  engineOptions.sharedLibPaths = libraries;
  auto engine = ExecutionEngine::create(module, engineOptions, createCpuTargetMachine("host", error));
  if (!engine) {
    why = "JIT compilation failed: " + llvm::toString(engine.takeError());
    return failure();
  }
  auto entry = (*engine)->lookupPacked(kCheckFunction);
  if (!entry) {
    why = "JIT compilation failed: " + llvm::toString(entry.takeError());
    return failure();
  }
  return runIsolated(*entry, seeds, why);
}

/// "raised MoE layer" and the node it was recognised at, when its
/// location names one (ONNX nodes: their file position says nothing).
std::string layerName(Location loc) {
  if (auto named = dyn_cast<NameLoc>(loc))
    return "raised MoE layer at '" + named.getName().str() + "'";
  return "raised MoE layer";
}

/// Whether `draw` has more differing rows than routing near a tie explains.
bool differs(const Draw &draw, const RowRule &rule) {
  float allowed = std::floor(draw.rows / rule.rowsPerTie);
  return !(draw.differing <= allowed);
}

/// Erases what only the dropped computation needed: its slice, users
/// before their operands, with the run-time size checks of its values (a
/// check is no use of what it checks: it dies with it).
void eraseDead(Value root, Block *block) {
  llvm::SetVector<Operation *> slice;
  sliceInBlock(root, block, slice);
  // Dead unless a live op reads it: the slice's ops and the pure ops
  // (sizes) that feed checks, users before their operands.
  llvm::DenseSet<Operation *> dead;
  for (Operation &op : llvm::reverse(*block)) {
    if (isRuntimeCheckCall(&op) || !wouldOpBeTriviallyDead(&op) ||
        (!slice.contains(&op) && !isMemoryEffectFree(&op)))
      continue;
    // A read inside a region (a generic's body) is its op's.
    if (llvm::all_of(op.getUsers(), [&](Operation *user) {
          Operation *reader = block->findAncestorOpInBlock(*user);
          return reader && (dead.contains(reader) || isRuntimeCheckCall(reader));
        }))
      dead.insert(&op);
  }
  // A check reading what the dropped slice computed goes with it.
  llvm::DenseSet<Operation *> tainted;
  for (Operation &op : *block)
    if (dead.contains(&op) && (slice.contains(&op) || llvm::any_of(op.getOperands(), [&](Value v) {
                                 return tainted.contains(v.getDefiningOp());
                               })))
      tainted.insert(&op);
  for (Operation &op : llvm::make_early_inc_range(*block))
    if (isRuntimeCheckCall(&op) &&
        llvm::any_of(op.getOperands(), [&](Value v) { return tainted.contains(v.getDefiningOp()); }))
      op.erase();
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(*block)))
    if (dead.contains(&op) && op.use_empty())
      op.erase();
}
} // namespace

mlir::moe::RaisingFlags::RaisingFlags(llvm::cl::OptionCategory &category)
    : verify("verify-raising",
             llvm::cl::desc("Check every recognised MoE layer against the ops it was recognised in: both run on "
                            "random inputs (CPU JIT); a layer that differs is refused (a remark) and its ops are "
                            "compiled instead (default: on when MOE_VERIFY_RAISING is set)"),
             llvm::cl::init(verifyRaisingByDefault()), llvm::cl::cat(category)),
      wrongForTesting("wrong-raising-for-testing",
                      llvm::cl::desc("Tests only: raise every layer with its renormalisation flipped"),
                      llvm::cl::init(false), llvm::cl::Hidden, llvm::cl::cat(category)) {}

RaisingOptions mlir::moe::RaisingFlags::options(RaisingCheckSummary *summary) const {
  RaisingOptions options;
  options.verify = verify;
  options.wrongForTesting = wrongForTesting;
  options.summary = summary;
  return options;
}

std::string mlir::moe::RaisingFlags::describe(const RaisingCheckSummary &summary) {
  if (summary.kept + summary.refused + summary.unchecked == 0)
    return "";
  return "raising check: " + std::to_string(summary.kept) + " kept, " + std::to_string(summary.refused) +
         " refused, " + std::to_string(summary.unchecked) + " not checked (" +
         std::to_string(int64_t(summary.milliseconds)) + " ms)";
}

/// MOE_VERIFY_RAISING's value ("" when unset).
static std::string verifyRaisingSetting() {
  const char *value = std::getenv("MOE_VERIFY_RAISING");
  return value ? value : "";
}

bool mlir::moe::verifyRaisingStrictly() { return verifyRaisingSetting() == "strict"; }

bool mlir::moe::verifyRaisingByDefault() {
  std::string value = verifyRaisingSetting();
  return !value.empty() && value != "0";
}

RaisingCheckSummary mlir::moe::checkRaisedLayers(ModuleOp module, bool strict) {
  RaisingCheckSummary summary;
  SmallVector<RaisingCheckOp> checks;
  module->walk([&](RaisingCheckOp op) { checks.push_back(op); });
  if (checks.empty())
    return summary;
  auto start = std::chrono::steady_clock::now();
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  MLIRContext *context = module.getContext();
  registerBuiltinDialectTranslation(*context);
  registerLLVMDialectTranslation(*context);
  for (RaisingCheckOp check : checks) {
    std::string why;
    FailureOr<SmallVector<Draw>> draws = failure();
    {
      // The check's own lowering speaks only through `why`.
      ScopedDiagnosticHandler quiet(context, [&](Diagnostic &diag) {
        if (diag.getSeverity() == DiagnosticSeverity::Error && why.empty())
          why = diag.str();
        return success();
      });
      FailureOr<OwningOpRef<ModuleOp>> checkModule = CheckBuilder(check).build(why);
      // Two draws: a difference counts only if both show it.
      if (succeeded(checkModule))
        draws = run(**checkModule, {1, 2}, why);
    }
    Value raised = check.getRaised(), original = check.getOriginal();
    RowRule rule = ruleFor(check.getType());
    Value kept = raised, dropped = original;
    if (failed(draws)) {
      emitRemark(check.getLoc()) << layerName(check.getLoc()) << " not checked against the ops it was recognised in: " << why;
      ++summary.unchecked;
    }
    else if (differs((*draws)[0], rule) && differs((*draws)[1], rule)) {
      const Draw &d = (*draws)[1];
      InFlightDiagnostic diag = strict ? emitError(check.getLoc()) : emitRemark(check.getLoc());
      diag << layerName(check.getLoc()) << " refused: on random inputs it differs from the ops it was recognised in ("
           << int64_t(d.differing) << " of " << int64_t(d.rows)
           << " rows beyond the tolerance, in two draws; relative error "
           << std::sqrt(d.error2 / std::max(d.norm2, 1e-30f)) << "); those ops are kept instead";
      ++summary.refused;
      std::swap(kept, dropped);
    }
    else {
      ++summary.kept;
    }
    Block *block = check->getBlock();
    check.replaceAllUsesWith(kept);
    check->erase();
    eraseDead(dropped, block);
  }
  summary.milliseconds =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return summary;
}
