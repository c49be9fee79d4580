//===- InitAll.h - register everything moe tools need -----------*- C++ -*-===//

#ifndef MOE_INITALL_H
#define MOE_INITALL_H

namespace mlir {
class DialectRegistry;
namespace moe {
/// Adds the moe dialect and the upstream dialects the moe tools work with.
void registerAllMoeDialects(DialectRegistry &registry);
/// Registers the moe passes (and pipelines) with the global pass registry.
void registerAllMoePasses();
} // namespace moe
} // namespace mlir

#endif // MOE_INITALL_H
