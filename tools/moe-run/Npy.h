//===- Npy.h - reading and writing NumPy .npy arrays ------------*- C++ -*-===//
//
// The .npy format (version 1.0 and 2.0), little-endian, C order. Element
// types: f64 '<f8', f32 '<f4', f16 '<f2', bf16 stored as its bit pattern
// '<u2' (NumPy has no bfloat16), i64 '<i8', i32 '<i4'.
//
//===----------------------------------------------------------------------===//

#ifndef TOOLS_MOE_RUN_NPY_H
#define TOOLS_MOE_RUN_NPY_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include <cstdint>
#include <string>
#include <vector>

namespace npy {

enum class DType { f64, f32, f16, bf16, i64, i32 };

/// Bytes per element and the .npy descr of a type.
size_t elementSize(DType type);
llvm::StringRef descr(DType type);
llvm::StringRef name(DType type);

struct Array {
  DType type = DType::f32;
  llvm::SmallVector<int64_t> shape;
  std::vector<uint8_t> data; // C order, little-endian

  int64_t numElements() const;
};

/// Reads `path`; the error names the file and what is wrong with it.
llvm::Expected<Array> read(llvm::StringRef path);
llvm::Error write(llvm::StringRef path, const Array &array);

/// Formats a shape as [2, 3, 4].
std::string shapeString(llvm::ArrayRef<int64_t> shape);

} // namespace npy

#endif // TOOLS_MOE_RUN_NPY_H
