//===- FuzzArtifactInputs.cpp - fuzz target: what moe-exec reads ----------===//
//
// Input: the bytes moe-exec trusts least, in one file: an artifact's
// signature text, then (after a line "--") .npy bytes for its inputs. The
// whole input is also checked as an ELF library header (moe-exec's check
// before dlopen). A signature that parses must print and parse back to
// itself; inputs are bound to it as moe-exec binds them (token count,
// types, shapes, size overflow).
//
//===----------------------------------------------------------------------===//

#include "moe/Support/ArtifactSignature.h"
#include "moe/Support/ElfCheck.h"

#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char *>(data), size);
  std::string error;
  (void)support::checkElfHeaders(bytes, size, error);

  size_t split = bytes.find("\n--\n");
  std::string text(bytes.substr(0, split));
  artifact::Signature sig;
  if (!artifact::parseSignature(text, sig, error))
    return 0;
  artifact::Signature again;
  std::string printed = artifact::signatureText(sig);
  if (!artifact::parseSignature(printed, again, error) || artifact::signatureText(again) != printed) {
    std::fprintf(stderr, "signature does not round-trip:\n%s", printed.c_str());
    std::abort();
  }
  // Each remaining "\n--\n"-separated chunk is one input's .npy bytes.
  std::vector<npy::Array> inputs;
  std::vector<std::string> names;
  while (split != std::string_view::npos) {
    size_t start = split + 4;
    split = bytes.find("\n--\n", start);
    npy::Array array;
    if (!npy::parse(bytes.substr(start, split == std::string_view::npos ? split : split - start), "input", array,
                    error))
      return 0;
    inputs.push_back(std::move(array));
    names.push_back("input");
  }
  int64_t tokens = artifact::tokenCount(sig, inputs, -1);
  (void)artifact::checkBuffers(sig, inputs, names, tokens, error);
  return 0;
}
