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

namespace {
/// A token of MLIR text as the upstream lexer splits it, enough to find
/// `array < element` and `!alias = value` whatever lies between the tokens.
struct Token {
  llvm::StringRef text;
  size_t offset;
};
} // namespace

static bool isIdentifierChar(char c) { return llvm::isAlnum(c) || c == '_' || c == '.' || c == '$' || c == '-'; }

/// MLIR's lexer skips whitespace, NUL bytes inside the buffer and `//`
/// comments between tokens; string literals are one token; an identifier,
/// keyword or prefixed name (`!t`, `#a`, `%v`, `@f`, `^bb`) is one token;
/// anything else one character.
static std::vector<Token> tokenize(llvm::StringRef text) {
  std::vector<Token> tokens;
  size_t i = 0, n = text.size();
  while (i < n) {
    char c = text[i];
    if (llvm::isSpace(c) || c == '\0') {
      ++i;
    } else if (c == '/' && i + 1 < n && text[i + 1] == '/') {
      while (i < n && text[i] != '\n')
        ++i;
    } else if (c == '"') {
      size_t start = i++;
      while (i < n && text[i] != '"' && text[i] != '\n')
        i += text[i] == '\\' ? 2 : 1;
      i = std::min(n, i + 1);
      tokens.push_back({text.slice(start, i), start});
    } else if (isIdentifierChar(c) || llvm::StringRef("!#%@^").contains(c)) {
      size_t start = i++;
      while (i < n && isIdentifierChar(text[i]))
        ++i;
      tokens.push_back({text.slice(start, i), start});
    } else {
      tokens.push_back({text.substr(i, 1), i++});
    }
  }
  return tokens;
}

std::optional<ParserHazard> mlir::moe::findParserHazard(llvm::StringRef text) {
  std::vector<Token> tokens = tokenize(text);
  // The parser recurses once per bracket: deep nesting overflows its stack.
  int64_t depth = 0;
  for (const Token &t : tokens) {
    char c = t.text.size() == 1 ? t.text[0] : '\0';
    bool arrow = c == '>' && t.offset > 0 && text[t.offset - 1] == '-';
    if (c == '(' || c == '[' || c == '{' || c == '<')
      ++depth;
    else if ((c == ')' || c == ']' || c == '}' || c == '>') && !arrow)
      depth = std::max<int64_t>(0, depth - 1);
    if (depth > kMaxNesting)
      return ParserHazard{t.offset, "brackets nest deeper than " + std::to_string(kMaxNesting) +
                                        " levels (the MLIR parser recurses once per level and would overflow "
                                        "its stack)"};
  }
  // Type aliases (`!t = index`): an array's element may name one.
  llvm::StringMap<llvm::StringRef> aliases;
  for (size_t i = 0; i + 2 < tokens.size(); ++i)
    if (tokens[i].text.size() > 1 && tokens[i].text[0] == '!' && tokens[i + 1].text == "=")
      aliases.try_emplace(tokens[i].text, tokens[i + 2].text);
  for (size_t i = 0; i + 2 < tokens.size(); ++i) {
    if (tokens[i].text != "array" || tokens[i + 1].text != "<")
      continue;
    llvm::StringRef element = tokens[i + 2].text, resolved = element;
    for (size_t steps = 0; steps <= aliases.size() && aliases.count(resolved); ++steps)
      resolved = aliases.lookup(resolved);
    if (resolved == "index")
      return ParserHazard{tokens[i].offset, "dense array of index elements ('array<" + element.str() +
                                                " ...>') is not supported: use i64 (MLIR 22's parser "
                                                "crashes on index arrays)"};
  }
  return std::nullopt;
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
