//===- moe-opt.cpp - the moe dialect's optimizer driver -------------------===//
//
// mlir-opt with the moe dialect and passes added: parses MLIR, runs the passes
// named on the command line, prints the result. `moe-opt --help` lists them.
//
//===----------------------------------------------------------------------===//

#include "moe/InitAll.h"
#include "moe/Tools/CudaToolkit.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::moe::registerAllMoeDialects(registry);
  mlir::moe::registerAllMoePasses();
  mlir::moe::setDefaultCudaToolkitPath();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moe-opt: optimizer driver for the moe (Mixture-of-Experts) dialect\n", registry));
}
