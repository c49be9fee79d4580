//===- moe-opt.cpp - the moe dialect's optimizer driver -------------------===//
//
// mlir-opt with the moe dialect and passes added: parses MLIR, runs the passes
// named on the command line, prints the result. `moe-opt --help` lists them.
// The input is checked for text MLIR's parser crashes on before it is parsed.
//
//===----------------------------------------------------------------------===//

#include "moe/InitAll.h"
#include "moe/Tools/CudaToolkit.h"
#include "moe/Tools/ParserHazards.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  mlir::DialectRegistry registry;
  mlir::moe::registerAllMoeDialects(registry);
  mlir::moe::registerAllMoePasses();
  mlir::moe::setDefaultCudaToolkitPath();
  auto [inputFile, outputFile] = mlir::registerAndParseCLIOptions(
      argc, argv, "moe-opt: optimizer driver for the moe (Mixture-of-Experts) dialect\n", registry);
  mlir::MlirOptMainConfig config = mlir::MlirOptMainConfig::createFromCLOptions();
  // Listing dialects or passes reads no input: upstream's driver does it.
  if (config.shouldShowDialects() || config.shouldListPasses())
    return mlir::asMainReturnCode(mlir::MlirOptMain(argc, argv, inputFile, outputFile, registry));

  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> input = mlir::openInputFile(inputFile, &error);
  if (!input) {
    llvm::errs() << error << "\n";
    return 1;
  }
  {
    llvm::SourceMgr scan;
    scan.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBuffer(input->getMemBufferRef(), false), llvm::SMLoc());
    if (failed(mlir::moe::checkParserHazards(scan, /*context=*/nullptr)))
      return 1;
  }
  std::unique_ptr<llvm::ToolOutputFile> output = mlir::openOutputFile(outputFile, &error);
  if (!output) {
    llvm::errs() << error << "\n";
    return 1;
  }
  if (failed(mlir::MlirOptMain(output->os(), std::move(input), registry, config)))
    return 1;
  output->keep();
  return 0;
}
