//===- ArtifactSignature.cpp - what a moe-compile artifact takes ----------===//

#include "moe/Support/ArtifactSignature.h"
#include "moe/Support/ParseNumber.h"

#include <algorithm>
#include <sstream>

using namespace artifact;

bool Signature::hasDynamicDims() const {
  auto dynamic = [](const BufferSignature &b) { return std::count(b.shape.begin(), b.shape.end(), -1) > 0; };
  return std::any_of(inputs.begin(), inputs.end(), dynamic) || std::any_of(outputs.begin(), outputs.end(), dynamic);
}

static std::string shapeText(const std::vector<int64_t> &shape) {
  if (shape.empty())
    return "scalar";
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "x" : "") + (shape[i] < 0 ? std::string("?") : std::to_string(shape[i]));
  return s;
}

std::string artifact::signatureText(const Signature &sig) {
  std::ostringstream os;
  os << "target " << sig.target << "\n" << "entry " << sig.entry << "\n";
  for (const BufferSignature &b : sig.inputs)
    os << "input " << b.name << " " << npy::mlirName(b.type) << " " << shapeText(b.shape) << "\n";
  for (const BufferSignature &b : sig.outputs)
    os << "output " << b.name << " " << npy::mlirName(b.type) << " " << shapeText(b.shape) << "\n";
  return os.str();
}

static bool parseShape(const std::string &text, std::vector<int64_t> &shape, std::string &error) {
  if (text == "scalar")
    return true;
  std::istringstream dims(text);
  for (std::string d; std::getline(dims, d, 'x');) {
    std::optional<int64_t> size = d == "?" ? std::optional<int64_t>(-1) : support::parseInt64(d);
    if (!size || *size < -1 || shape.size() == kMaxRank) {
      error = "artifact signature has a bad shape '" + text + "'";
      return false;
    }
    shape.push_back(*size);
  }
  if (shape.empty()) {
    error = "artifact signature has a buffer without a shape";
    return false;
  }
  return true;
}

bool artifact::parseSignature(const std::string &text, Signature &sig, std::string &error) {
  sig = Signature();
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "target") {
      std::getline(words, sig.target);
      sig.target.erase(0, sig.target.find_first_not_of(' '));
      sig.gpu = sig.target.rfind("gpu", 0) == 0;
    } else if (kind == "entry") {
      words >> sig.entry;
    } else if (kind == "input" || kind == "output") {
      BufferSignature b;
      std::string dtype, shape;
      words >> b.name >> dtype >> shape;
      std::optional<npy::DType> type = npy::fromMlirName(dtype);
      if (!type) {
        error = "artifact signature has an unknown dtype '" + dtype + "'";
        return false;
      }
      b.type = *type;
      if (!parseShape(shape, b.shape, error))
        return false;
      if (sig.inputs.size() + sig.outputs.size() == kMaxBuffers) {
        error = "artifact signature declares more than " + std::to_string(kMaxBuffers) + " buffers";
        return false;
      }
      (kind == "output" ? sig.outputs : sig.inputs).push_back(std::move(b));
    } else if (!kind.empty()) {
      error = "artifact signature has an unknown line '" + line + "'";
      return false;
    }
  }
  if (sig.target.empty() || sig.entry.empty()) {
    error = "the artifact's signature has no target or entry";
    return false;
  }
  return true;
}

int64_t artifact::tokenCount(const Signature &sig, const std::vector<npy::Array> &inputs, int64_t tokens) {
  if (tokens >= 0)
    return tokens;
  for (size_t i = 0; i < inputs.size() && i < sig.inputs.size(); ++i) {
    const std::vector<int64_t> &declared = sig.inputs[i].shape;
    for (size_t d = 0; d < declared.size() && d < inputs[i].shape.size(); ++d)
      if (declared[d] < 0)
        return inputs[i].shape[d];
  }
  return -1;
}

std::vector<int64_t> artifact::concreteShape(const std::vector<int64_t> &shape, int64_t tokens) {
  std::vector<int64_t> out = shape;
  for (int64_t &d : out)
    if (d < 0)
      d = tokens;
  return out;
}

bool artifact::checkBuffers(const Signature &sig, const std::vector<npy::Array> &inputs,
                            const std::vector<std::string> &names, int64_t tokens, std::string &error) {
  if (sig.hasDynamicDims() && tokens < 0) {
    error = "the artifact has dynamic (?) dimensions: give --tokens or input files";
    return false;
  }
  if (!inputs.empty() && inputs.size() != sig.inputs.size()) {
    error = "@" + sig.entry + " takes " + std::to_string(sig.inputs.size()) + " inputs, got " +
            std::to_string(inputs.size()) + " --input";
    return false;
  }
  for (size_t i = 0; i < sig.inputs.size() + sig.outputs.size(); ++i) {
    bool isInput = i < sig.inputs.size();
    const BufferSignature &b = isInput ? sig.inputs[i] : sig.outputs[i - sig.inputs.size()];
    std::vector<int64_t> want = concreteShape(b.shape, tokens);
    std::string what = (isInput ? "input " : "output ") + std::to_string(isInput ? i : i - sig.inputs.size());
    if (!support::byteSize(want, int64_t(npy::elementSize(b.type)))) {
      error = what + " of shape " + npy::shapeString(want) + " is too large";
      return false;
    }
    if (!isInput || inputs.empty())
      continue;
    std::string source = i < names.size() ? names[i] : "the data given";
    if (inputs[i].type != b.type) {
      error = what + " is " + npy::name(b.type) + " but " + source + " holds " + npy::name(inputs[i].type);
      return false;
    }
    if (inputs[i].shape != want) {
      error = what + " must have shape " + npy::shapeString(want) + " but " + source + " has " +
              npy::shapeString(inputs[i].shape);
      return false;
    }
  }
  return true;
}
