//===- CpuTarget.h - the CPU the generated host code is tuned for -*- C++ -*-===//
//
// The CPU lowering emits 512- or 256-bit vector code; LLVM turns it into
// AVX-512 or AVX2 instructions only when the target machine names a CPU that
// has them (the default "generic" x86-64 has SSE2 only). moe-run compiles for
// the machine it runs on; moe-compile for `--cpu` (default: this machine).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_CPUTARGET_H
#define MOE_TOOLS_CPUTARGET_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Target/TargetMachine.h"

#include <memory>
#include <string>
#include <vector>

namespace mlir::moe {

/// A target machine for `cpu`: "host" (this machine's CPU and every feature
/// it has) or an LLVM CPU name for the default triple (x86-64, x86-64-v3,
/// x86-64-v4, znver4, sapphirerapids, ...). Null with `error` set for an
/// unknown CPU.
std::unique_ptr<llvm::TargetMachine> createCpuTargetMachine(llvm::StringRef cpu, std::string &error);

/// The widest vector register (bits) the lowering should use for `machine`:
/// 512 with AVX-512F, 256 with AVX2, else 128.
unsigned preferredVectorBits(const llvm::TargetMachine &machine);

/// Whether `machine` has bf16 dot products (AVX512_BF16's vdpbf16ps) for
/// the bf16 contraction kernels.
bool hasBf16DotProducts(const llvm::TargetMachine &machine);

/// The x86 features of `machine` that a C program can test at run time
/// (__builtin_cpu_supports names, which LLVM spells the same): an artifact
/// checks them before running code that would otherwise die of SIGILL.
/// Empty for other architectures.
std::vector<std::string> runtimeCheckableFeatures(const llvm::TargetMachine &machine);

/// LLVM's O3 pipeline for the host code, tuned for `machine`, without LLVM's
/// loop unrolling: the contraction kernels are unrolled into register tiles
/// by the lowering already, and unrolling every other loop nest (the
/// non-MoE parts of an imported model, dynamic trip counts) multiplied the
/// code LLVM then had to optimise and assemble (tiny Mixtral export: 6.2 s
/// of 6.6 s; 1.2 s without it). Loop-free functions that are mostly calls
/// (a deep model's entry function and C wrapper) are left unoptimised.
llvm::Error optimizeHostModule(llvm::Module &module, llvm::TargetMachine *machine);

} // namespace mlir::moe

#endif // MOE_TOOLS_CPUTARGET_H
