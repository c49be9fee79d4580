//===- ParserHazards.h - text MLIR 22's parser crashes on --------*- C++ -*-===//
//
// MLIR 22's parser crashes (SIGSEGV in Parser::parseDenseArrayAttr) on a
// dense array of `index` elements, `array<index: 1>`, instead of reporting
// it: it asks an index type for its float width; and it recurses once per
// nested bracket, so very deep nesting overflows the stack. The tools scan
// their MLIR input for both first and report them as located errors.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_PARSERHAZARDS_H
#define MOE_TOOLS_PARSERHAZARDS_H

#include "mlir/Support/LLVM.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/LogicalResult.h"

#include <cstdint>
#include <optional>
#include <string>

namespace llvm {
class SourceMgr;
} // namespace llvm

namespace mlir {
class MLIRContext;
} // namespace mlir

namespace mlir::moe {

/// The deepest nesting of brackets ((, [, {, <) the tools parse.
inline constexpr int64_t kMaxNesting = 256;

struct ParserHazard {
  size_t offset; // into the text
  std::string message;
};

/// The first construct in MLIR text `text` that the upstream parser would
/// crash on, skipping string literals and comments; `array<!t: ...>` counts
/// when the alias `!t` names `index`.
std::optional<ParserHazard> findParserHazard(llvm::StringRef text);

/// Fails after reporting the first hazard of `sourceMgr`'s main buffer as an
/// error at its line and column: through `context`'s diagnostics, or on
/// stderr when `context` is null.
LogicalResult checkParserHazards(llvm::SourceMgr &sourceMgr, MLIRContext *context);

} // namespace mlir::moe

#endif // MOE_TOOLS_PARSERHAZARDS_H
