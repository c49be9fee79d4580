//===- moe-translate.cpp - model importers ---------------------------------===//
//
// mlir-translate with the project's importers:
//
//   moe-translate --import-onnx model.onnx -o model.mlir
//
// External-data files are found next to the model. The result is the graph
// as one func.func (`main_graph`): MoE nodes as moe ops, everything else as
// linalg/tensor/arith/math, ready for moe-opt, moe-run and moe-compile.
//
//===----------------------------------------------------------------------===//

#include "moe/Frontend/OnnxImport.h"

#include "mlir/Tools/mlir-translate/MlirTranslateMain.h"

int main(int argc, char **argv) {
  mlir::moe::registerOnnxImportTranslation();
  return mlir::failed(mlir::mlirTranslateMain(
             argc, argv,
             "moe-translate: import models into MLIR (moe dialect)\n\n"
             "  moe-translate --import-onnx model.onnx -o model.mlir\n\n"
             "External data files are read from the model's directory. docs/onnx.md lists the\n"
             "supported ONNX ops; an unsupported one is an error naming the node.\n"))
             ? 1
             : 0;
}
