//===- Npy.h - reading and writing NumPy .npy arrays ------------*- C++ -*-===//
//
// The .npy format (version 1.0 and 2.0), little-endian, C order. Element
// types: f64 '<f8', f32 '<f4', f16 '<f2', bf16 stored as its bit pattern
// '<u2' (NumPy has no bfloat16), i64 '<i8', i32 '<i4'.
//
// Standard C++ only: moe-run (with MLIR) and moe-exec (without) share it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_NPY_H
#define MOE_SUPPORT_NPY_H

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace npy {

/// i8 is a byte (packed quantised weights): .npy int8, or uint8 read as its bits.
enum class DType { f64, f32, f16, bf16, i64, i32, i8 };

/// Bytes per element, the .npy descr ("<f4") and a readable name of a type.
size_t elementSize(DType type);
std::string descr(DType type);
std::string name(DType type);
/// The type named as MLIR spells it (f32, bf16, i32, ...), and back.
std::optional<DType> fromMlirName(const std::string &name);
std::string mlirName(DType type);

struct Array {
  DType type = DType::f32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data; // C order, little-endian
  /// Instead of `data`: the file's bytes mapped copy-on-write (npy::map).
  std::shared_ptr<uint8_t> mapped;

  int64_t numElements() const;
  uint8_t *bytes() { return mapped ? mapped.get() : data.data(); }
  const uint8_t *bytes() const { return mapped ? mapped.get() : data.data(); }
  size_t byteCount() const { return size_t(numElements()) * elementSize(type); }
};

/// Reads `path` into `array`; on failure `error` names the file and what is
/// wrong with it.
bool read(const std::string &path, Array &array, std::string &error);
/// As read, but maps the file copy-on-write (POSIX mmap) instead of reading
/// it: a page is read from the file only when something touches it, so a
/// process that uses part of a large array (an expert-parallel rank, its
/// experts' weights) holds only that part in memory. Writes stay private.
bool map(const std::string &path, Array &array, std::string &error);
/// Decodes the .npy file held in `bytes`; `path` names it in errors.
bool parse(std::string_view bytes, const std::string &path, Array &array, std::string &error);
bool write(const std::string &path, const Array &array, std::string &error);

/// Formats a shape as [2, 3, 4].
std::string shapeString(const std::vector<int64_t> &shape);

} // namespace npy

#endif // MOE_SUPPORT_NPY_H
