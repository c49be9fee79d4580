//===- ArrayData.h - element conversions and seeded random arrays -*- C++ -*-===//
//
// What moe-run and moe-exec both do with array bytes: convert between f32 and
// the 16-bit float formats (round to nearest even), read any element as a
// double, write a value as any element type, and draw the seeded random
// inputs (the same stream in both tools). Standard C++ only.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_ARRAYDATA_H
#define MOE_SUPPORT_ARRAYDATA_H

#include "moe/Support/Npy.h"

#include <cstdint>
#include <vector>

namespace npy {

uint16_t floatToBf16(float value);
float bf16ToFloat(uint16_t bits);
uint16_t floatToHalf(float value);
float halfToFloat(uint16_t bits);

/// Element `i` of `array` as a double.
double elementAt(const Array &array, int64_t i);
/// `value` as one element of `type`, little-endian bytes.
std::vector<uint8_t> encodeElement(DType type, double value);

/// splitmix64, the generator of random inputs.
uint64_t splitmix64(uint64_t &state);
/// Uniform floats in [-scale, scale), or integers in [0, 8), drawn from
/// splitmix64 seeded with `streamSeed`.
Array randomArray(DType type, const std::vector<int64_t> &shape, uint64_t streamSeed, double scale);

} // namespace npy

#endif // MOE_SUPPORT_ARRAYDATA_H
