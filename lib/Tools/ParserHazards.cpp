//===- ParserHazards.cpp - text MLIR 22's parser crashes on ---------------===//

#include "moe/Tools/ParserHazards.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Location.h"
#include "mlir/IR/MLIRContext.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;
using namespace mlir::moe;

static bool isIdentifierChar(char c) {
  return llvm::isAlnum(c) || c == '_' || c == '.' || c == '$';
}

/// The identifier (or `!alias`) starting at `pos`.
static llvm::StringRef wordAt(llvm::StringRef text, size_t pos) {
  size_t end = pos;
  if (end < text.size() && text[end] == '!')
    ++end;
  while (end < text.size() && isIdentifierChar(text[end]))
    ++end;
  return text.slice(pos, end);
}

static size_t skipSpace(llvm::StringRef text, size_t pos) {
  while (pos < text.size() && llvm::isSpace(text[pos]))
    ++pos;
  return pos;
}

/// Calls `visit(offset)` for each position of `text` outside string
/// literals and `//` comments.
template <typename Visit>
static void forEachCodePosition(llvm::StringRef text, Visit visit) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '"') {
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\')
          ++i;
      continue;
    }
    if (text[i] == '/' && i + 1 < text.size() && text[i + 1] == '/') {
      while (i < text.size() && text[i] != '\n')
        ++i;
      continue;
    }
    visit(i);
  }
}

std::optional<ParserHazard> mlir::moe::findParserHazard(llvm::StringRef text) {
  // Type aliases (`!t = index`): an array's element may name one.
  llvm::StringMap<llvm::StringRef> aliases;
  forEachCodePosition(text, [&](size_t i) {
    if (text[i] != '!' || (i > 0 && isIdentifierChar(text[i - 1])))
      return;
    llvm::StringRef name = wordAt(text, i);
    size_t eq = skipSpace(text, i + name.size());
    if (name.size() > 1 && eq < text.size() && text[eq] == '=')
      aliases.try_emplace(name, wordAt(text, skipSpace(text, eq + 1)));
  });
  std::optional<ParserHazard> hazard;
  forEachCodePosition(text, [&](size_t i) {
    if (hazard || !text.substr(i).starts_with("array<") ||
        (i > 0 && (isIdentifierChar(text[i - 1]) || text[i - 1] == '!')))
      return;
    llvm::StringRef element = wordAt(text, skipSpace(text, i + 6)), resolved = element;
    for (size_t steps = 0; steps <= aliases.size() && aliases.count(resolved); ++steps)
      resolved = aliases.lookup(resolved);
    if (resolved == "index")
      hazard = ParserHazard{i, "dense array of index elements ('array<" + element.str() +
                                   " ...>') is not supported: use i64 (MLIR 22's parser "
                                   "crashes on index arrays)"};
  });
  return hazard;
}

LogicalResult mlir::moe::checkParserHazards(llvm::SourceMgr &sourceMgr, MLIRContext *context) {
  const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
  std::optional<ParserHazard> hazard = findParserHazard(buffer->getBuffer());
  if (!hazard)
    return success();
  llvm::SMLoc where = llvm::SMLoc::getFromPointer(buffer->getBufferStart() + hazard->offset);
  if (!context) {
    sourceMgr.PrintMessage(where, llvm::SourceMgr::DK_Error, hazard->message);
    return failure();
  }
  auto [line, column] = sourceMgr.getLineAndColumn(where);
  return emitError(FileLineColLoc::get(context, buffer->getBufferIdentifier(), line, column), hazard->message);
}
