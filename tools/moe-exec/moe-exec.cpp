//===- moe-exec.cpp - run and time a moe-compile artifact ------------------===//
//
// Loads an artifact (moe-compile's shared library), feeds it .npy files or
// seeded random data, runs it (warm-up, then timed runs: CUDA events on the
// GPU, a steady clock on the CPU; the median is reported), writes the
// outputs as .npy and compares them with reference outputs. Standard C++,
// libdl and libmoe_runtime only: it runs where no LLVM, MLIR or CUDA
// toolkit is installed. Without a GPU or driver, a GPU artifact is a clear
// error and exit status 1.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/MoeRuntime.h"
#include "moe/Support/ArtifactSignature.h"
#include "moe/Support/ArrayData.h"
#include "moe/Support/Compare.h"
#include "moe/Support/ElfCheck.h"
#include "moe/Support/LauncherRank.h"
#include "moe/Support/Npy.h"
#include "moe/Support/ParseNumber.h"
#include "moe/Support/SystemMemory.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using npy::Array;
using npy::DType;

namespace {

const char *kUsage =
    "moe-exec: run and time an artifact built by moe-compile\n\n"
    "usage: moe-exec ARTIFACT.so [options]\n\n"
    "  --input FILE.npy     data of the next input, in order (all inputs, or none: then\n"
    "                       every input is seeded random data)\n"
    "  --seed N             seed of the random inputs (default 0)\n"
    "  --random-scale X     random floats are uniform in [-X, X) (default 1)\n"
    "  --fill I=VALUE       input I holds VALUE everywhere, written on the device for a GPU\n"
    "                       artifact (large weights without host data; random inputs only)\n"
    "  --tokens N           size of the dynamic (?) dimensions (default: from the inputs)\n"
    "  --warmup N           untimed runs first (default 1)\n"
    "  --repeat N           timed runs; the median is reported (default 1)\n"
    "  --profile-kernels    GPU artifacts: time every kernel of the timed runs (CUDA events\n"
    "                       around each launch) and print each one's mean time per run\n"
    "  --output-dir DIR     write output_<i>.npy there (made if missing) (and input_<i>.npy with --save-inputs)\n"
    "  --save-inputs        also write the inputs used\n"
    "  --reference FILE.npy expected data of the next output; prints the normwise relative\n"
    "                       error max|ours - ref| / max|ref| and fails above the tolerance\n"
    "  --tolerance T        (default: 1e-5 f32/f64, 2e-3 f16, 8e-3 bf16, 0 integers)\n"
    "Under mpirun (an expert-parallel artifact, moe-compile --ranks), %r in the paths of\n"
    "--input, --reference and --output-dir is this process's rank: each rank reads its own\n"
    "tokens and writes its own outputs, e.g.\n"
    "  mpirun -np 2 moe-exec libm.so --input x.%r.npy --input w.npy --output-dir out.%r\n"
    "bf16 data is stored in .npy as uint16 bits, as moe-run does.\n";

/// What every line starts with; under mpirun it names the rank, as the
/// ranks' lines interleave.
std::string tag = "[moe-exec]", errorTag = "moe-exec: error:";

int failWith(const std::string &message) {
  std::fprintf(stderr, "%s %s\n", errorTag.c_str(), message.c_str());
  return 1;
}

/// An array of `value`; without `materialize` only its type and shape (the
/// GPU fills its memory directly).
Array filledArray(DType type, const std::vector<int64_t> &shape, double value, bool materialize) {
  Array a;
  a.type = type;
  a.shape = shape;
  if (materialize) {
    std::vector<uint8_t> element = npy::encodeElement(type, value);
    a.data.reserve(size_t(a.numElements()) * element.size());
    for (int64_t i = 0; i < a.numElements(); ++i)
      a.data.insert(a.data.end(), element.begin(), element.end());
  }
  return a;
}

/// Writes `value` into every element of `a`'s device copy.
int fillDevice(void *device, const Array &a, double value) {
  std::vector<uint8_t> element = npy::encodeElement(a.type, value);
  size_t count = size_t(a.numElements());
  if (element.size() == 1)
    return moeRuntimeFill8(device, element[0], count);
  if (element.size() == 2) {
    uint16_t pattern;
    std::memcpy(&pattern, element.data(), 2);
    return moeRuntimeFill16(device, pattern, count);
  }
  if (element.size() == 4) {
    uint32_t pattern;
    std::memcpy(&pattern, element.data(), 4);
    return moeRuntimeFill32(device, pattern, count);
  }
  uint32_t words[2];
  std::memcpy(words, element.data(), 8);
  if (words[0] != words[1])
    return 1; // 8-byte values other than 0 would need a kernel
  return moeRuntimeFill32(device, words[0], count * 2);
}

struct Options {
  std::string artifact, outputDir;
  std::vector<std::string> inputs, references;
  std::vector<std::pair<size_t, double>> fills;
  uint64_t seed = 0;
  double randomScale = 1.0;
  int64_t tokens = -1;
  int64_t warmup = 1, repeat = 1;
  bool saveInputs = false, profileKernels = false;
  double tolerance = -1;
};

bool parseOptions(int argc, char **argv, Options &o, std::string &error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string &out) {
      if (i + 1 >= argc) {
        error = arg + " needs a value";
        return false;
      }
      out = argv[++i];
      return true;
    };
    std::string v;
    // A number option: all of its value must be a number of the option's kind.
    auto number = [&](auto parse, auto &out) {
      if (!value(v))
        return false;
      auto parsed = parse(v);
      if (!parsed) {
        error = "bad value '" + v + "' for " + arg;
        return false;
      }
      out = *parsed;
      return true;
    };
    bool ok = true;
    if (arg == "--input") { if ((ok = value(v))) o.inputs.push_back(v); }
    else if (arg == "--reference") { if ((ok = value(v))) o.references.push_back(v); }
    else if (arg == "--output-dir") { ok = value(o.outputDir); }
    else if (arg == "--seed") { ok = number(support::parseUInt64, o.seed); }
    else if (arg == "--random-scale") { ok = number(support::parseDouble, o.randomScale); }
    else if (arg == "--tokens") { ok = number(support::parseInt64, o.tokens); }
    else if (arg == "--warmup") { ok = number(support::parseInt64, o.warmup); }
    else if (arg == "--repeat") { ok = number(support::parseInt64, o.repeat); }
    else if (arg == "--tolerance") { ok = number(support::parseDouble, o.tolerance); }
    else if (arg == "--fill") {
      if (!value(v)) return false;
      size_t eq = v.find('=');
      std::optional<uint64_t> index = eq == std::string::npos ? std::nullopt : support::parseUInt64(v.substr(0, eq));
      std::optional<double> fill = eq == std::string::npos ? std::nullopt : support::parseDouble(v.substr(eq + 1));
      if (!index || !fill) { error = "--fill takes INPUT=VALUE, got '" + v + "'"; return false; }
      o.fills.push_back({*index, *fill});
    }
    else if (arg == "--save-inputs") { o.saveInputs = true; }
    else if (arg == "--profile-kernels") { o.profileKernels = true; }
    else if (arg.rfind("--", 0) == 0) { error = "unknown option " + arg + " (see --help)"; return false; }
    else if (o.artifact.empty()) { o.artifact = arg; }
    else { error = "more than one artifact given: " + o.artifact + ", " + arg; return false; }
    if (!ok)
      return false;
  }
  if (o.artifact.empty()) {
    error = "no artifact given (see --help)";
    return false;
  }
  if (!o.fills.empty() && !o.inputs.empty()) {
    error = "--fill works with random inputs, not with --input files";
    return false;
  }
  if (o.repeat < 1 || o.warmup < 0 || o.tokens < -1) {
    error = "--repeat must be >= 1, --warmup and --tokens >= 0";
    return false;
  }
  return true;
}

/// The artifact's C API.
struct Artifact {
  const char *(*signature)() = nullptr;
  int (*run)(void *const *, int64_t) = nullptr;
  const char *(*error)() = nullptr;
};

struct RunContext {
  Artifact *artifact;
  std::vector<void *> *pointers;
  int64_t tokens;
  int status = 0;
};

void runOnce(void *context) {
  auto *c = static_cast<RunContext *>(context);
  c->status = c->artifact->run(c->pointers->data(), c->tokens);
}

} // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  Options opt;
  std::string error;
  if (!parseOptions(argc, argv, opt, error))
    return failWith(error);
  if (std::optional<std::string> rank = support::launcherRank()) {
    tag = "[moe-exec rank " + *rank + "]";
    errorTag = "moe-exec (rank " + *rank + "): error:";
    for (std::string &path : opt.inputs)
      path = support::withRank(path, *rank);
    for (std::string &path : opt.references)
      path = support::withRank(path, *rank);
    opt.outputDir = support::withRank(opt.outputDir, *rank);
  }
  if (!opt.outputDir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opt.outputDir, ec);
    if (ec)
      return failWith("--output-dir " + opt.outputDir + ": " + ec.message());
  }

  // A bare file name would make dlopen search the system's library path.
  if (opt.artifact.find('/') == std::string::npos)
    opt.artifact = "./" + opt.artifact;
  if (!support::checkElfFile(opt.artifact, error))
    return failWith("cannot load " + opt.artifact + ": " + error);
  void *library = dlopen(opt.artifact.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library)
    return failWith("cannot load " + opt.artifact + ": " + dlerror());
  Artifact artifact;
  artifact.signature = reinterpret_cast<const char *(*)()>(dlsym(library, "moe_artifact_signature"));
  artifact.run = reinterpret_cast<int (*)(void *const *, int64_t)>(dlsym(library, "moe_artifact_run"));
  artifact.error = reinterpret_cast<const char *(*)()>(dlsym(library, "moe_artifact_error"));
  if (!artifact.signature || !artifact.run || !artifact.error)
    return failWith(opt.artifact + " is not a moe-compile artifact (no moe_artifact_* functions)");
  artifact::Signature sig;
  if (!artifact::parseSignature(artifact.signature(), sig, error))
    return failWith(error);
  if (sig.gpu) {
    if (moeRuntimeInit() != 0)
      return failWith(std::string("cannot run the GPU artifact ") + opt.artifact + ": " +
                      (moeRuntimeError() ? moeRuntimeError() : "GPU initialisation failed"));
    std::printf("%s %s on %s\n", tag.c_str(), sig.entry.c_str(), moeRuntimeDeviceName());
  } else {
    std::printf("%s %s on the CPU\n", tag.c_str(), sig.entry.c_str());
  }

  // Inputs: files (their dynamic dimensions give the token count) or random.
  const std::vector<artifact::BufferSignature> &ins = sig.inputs, &outs = sig.outputs;
  if (!opt.references.empty() && opt.references.size() != outs.size())
    return failWith("@" + sig.entry + " has " + std::to_string(outs.size()) + " outputs, got " +
                    std::to_string(opt.references.size()) + " --reference");
  for (auto [index, value] : opt.fills)
    if (index >= ins.size())
      return failWith("--fill " + std::to_string(index) + ": @" + sig.entry + " has " +
                      std::to_string(ins.size()) + " inputs");
  auto fillValue = [&](size_t i) -> std::optional<double> {
    for (auto [index, value] : opt.fills)
      if (index == i)
        return value;
    return std::nullopt;
  };
  // Mapped, not read: a page of an input is loaded when the artifact reads
  // it, so an expert-parallel rank holds its experts' weights only.
  std::vector<Array> hostIn(opt.inputs.size());
  for (size_t i = 0; i < opt.inputs.size(); ++i)
    if (!npy::map(opt.inputs[i], hostIn[i], error))
      return failWith(error);
  int64_t tokens = artifact::tokenCount(sig, hostIn, opt.tokens);
  if (!artifact::checkBuffers(sig, hostIn, opt.inputs, tokens, error))
    return failWith(error);
  // Host copies of the buffers: random inputs (files are already read) and outputs.
  int64_t hostBytes = 0;
  for (const std::vector<artifact::BufferSignature> *list : {&ins, &outs})
    for (const artifact::BufferSignature &b : *list)
      if (list == &outs || opt.inputs.empty())
        hostBytes = std::min(INT64_MAX - hostBytes, *support::byteSize(artifact::concreteShape(b.shape, tokens),
                                                                        int64_t(npy::elementSize(b.type)))) +
                    hostBytes;
  if (!support::fitsInMemory(hostBytes, "the host copy of the buffers for --tokens " + std::to_string(tokens), error))
    return failWith(error);
  // Sizes are checked; memory may still run out on a large request.
  try {
    if (opt.inputs.empty()) {
      hostIn.resize(ins.size());
      for (size_t i = 0; i < ins.size(); ++i) {
        std::vector<int64_t> want = artifact::concreteShape(ins[i].shape, tokens);
        hostIn[i] = fillValue(i) ? filledArray(ins[i].type, want, *fillValue(i), /*materialize=*/!sig.gpu)
                                 : npy::randomArray(ins[i].type, want, opt.seed * 1000003ULL + i, opt.randomScale);
      }
    }
  } catch (const std::bad_alloc &) {
    return failWith("out of memory making the random inputs for --tokens " + std::to_string(tokens));
  }
  std::vector<Array> hostOut(outs.size());
  try {
    for (size_t i = 0; i < outs.size(); ++i) {
      hostOut[i].type = outs[i].type;
      hostOut[i].shape = artifact::concreteShape(outs[i].shape, tokens);
      hostOut[i].data.assign(size_t(hostOut[i].numElements()) * npy::elementSize(hostOut[i].type), 0);
    }
  } catch (const std::bad_alloc &) {
    return failWith("out of memory allocating the outputs for --tokens " + std::to_string(tokens));
  }

  // Buffers where the artifact computes: device memory or the host arrays.
  std::vector<void *> pointers;
  auto releaseDevice = [&]() {
    if (sig.gpu)
      for (void *p : pointers)
        moeRuntimeFree(p);
  };
  for (size_t i = 0; i < hostIn.size() + hostOut.size(); ++i) {
    Array *a = i < hostIn.size() ? &hostIn[i] : &hostOut[i - hostIn.size()];
    if (!sig.gpu) {
      pointers.push_back(a->bytes());
      continue;
    }
    size_t bytes = size_t(a->numElements()) * npy::elementSize(a->type);
    void *device = moeRuntimeAlloc(bytes);
    std::optional<double> fill = i < hostIn.size() ? fillValue(i) : std::nullopt;
    int copied = !device ? 1
                 : fill  ? fillDevice(device, *a, *fill)
                         : moeRuntimeCopyToDevice(device, a->bytes(), bytes);
    if (copied != 0) {
      releaseDevice();
      return failWith(std::string("device memory: ") + (moeRuntimeError() ? moeRuntimeError() : ""));
    }
    pointers.push_back(device);
  }

  // Warm-up, then timed runs.
  RunContext context{&artifact, &pointers, tokens < 0 ? 0 : tokens};
  std::vector<double> times;
  if (opt.profileKernels && !sig.gpu)
    std::printf("%s --profile-kernels: a CPU artifact launches no kernels; nothing to profile\n", tag.c_str());
  for (int64_t r = 0; r < opt.warmup + opt.repeat; ++r) {
    if (sig.gpu && opt.profileKernels && r == opt.warmup)
      moeRuntimeProfileKernels(1);
    double ms = 0;
    if (sig.gpu) {
      float elapsed = 0;
      if (moeRuntimeTime(runOnce, &context, &elapsed) != 0)
        context.status = 1;
      ms = elapsed;
    } else {
      auto start = std::chrono::steady_clock::now();
      runOnce(&context);
      ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
    if (context.status != 0) {
      const char *why = artifact.error();
      releaseDevice();
      return failWith("the artifact failed: " + std::string(why ? why : "unknown error"));
    }
    if (r >= opt.warmup)
      times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  std::printf("%s %lld runs after %lld warm-up: median %.4f ms, min %.4f ms (%s)\n", tag.c_str(), static_cast<long long>(opt.repeat),
              static_cast<long long>(opt.warmup), times[times.size() / 2], times.front(),
              sig.gpu ? "CUDA events" : "steady clock");
  if (sig.gpu && opt.profileKernels) {
    moeRuntimeProfileKernels(0);
    std::printf("%s ", tag.c_str());
    if (moeRuntimeProfileReport(static_cast<int>(opt.repeat)) != 0) {
      releaseDevice();
      return failWith(std::string("kernel profile: ") + (moeRuntimeError() ? moeRuntimeError() : "no data"));
    }
  }

  for (size_t i = 0; i < outs.size(); ++i) {
    Array &out = hostOut[i];
    if (sig.gpu && moeRuntimeCopyToHost(out.data.data(), pointers[ins.size() + i], out.data.size()) != 0) {
      releaseDevice();
      return failWith(std::string("copying output back: ") + moeRuntimeError());
    }
  }
  releaseDevice();

  int status = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    const Array &out = hostOut[i];
    std::printf("%s output %zu: %s %s", tag.c_str(), i, npy::name(out.type).c_str(),
                npy::shapeString(out.shape).c_str());
    if (!opt.outputDir.empty()) {
      std::string path = opt.outputDir + "/output_" + std::to_string(i) + ".npy";
      if (!npy::write(path, out, error))
        return failWith(error);
      std::printf(" -> %s", path.c_str());
    }
    std::printf("\n");
    if (opt.references.empty())
      continue;
    Array ref;
    if (!npy::read(opt.references[i], ref, error))
      return failWith(error);
    npy::Comparison c;
    if (!npy::compare(out, ref, opt.tolerance, c, error))
      return failWith("output " + std::to_string(i) + " vs " + opt.references[i] + ": " + error);
    std::printf("%s output %zu vs %s: %s\n", tag.c_str(), i, opt.references[i].c_str(), npy::describe(c).c_str());
    status |= c.ok() ? 0 : 1;
  }
  if (opt.saveInputs && !opt.outputDir.empty())
    for (size_t i = 0; i < hostIn.size(); ++i)
      if (!npy::write(opt.outputDir + "/input_" + std::to_string(i) + ".npy", hostIn[i], error))
        return failWith(error);
  return status;
}
