//===- JitAddressSanitizer.h - ASan for the code moe-run compiles -*- C++ -*-===//
//
// In a sanitizer build (MOE_SANITIZE) moe-run instruments the code it
// JIT-compiles with AddressSanitizer too, so the test suite's programs run
// with every load and store checked, on hostile values as on normal ones:
// an out-of-bounds access in generated code is a report, not silence. The
// ASan runtime linked into moe-run serves the instrumented code.
//
//===----------------------------------------------------------------------===//

#ifndef TOOLS_MOE_RUN_JITADDRESSSANITIZER_H
#define TOOLS_MOE_RUN_JITADDRESSSANITIZER_H

namespace llvm {
class Module;
} // namespace llvm

namespace moe_run {

/// Whether this moe-run was built with AddressSanitizer.
bool builtWithAddressSanitizer();

/// Marks every function of `module` sanitize_address and runs the ASan
/// instrumentation (no module constructor: the runtime is already running).
void instrumentWithAddressSanitizer(llvm::Module &module);

} // namespace moe_run

#endif // TOOLS_MOE_RUN_JITADDRESSSANITIZER_H
