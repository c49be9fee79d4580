//===- ArrayData.cpp - element conversions and seeded random arrays -------===//

#include "moe/Support/ArrayData.h"

#include <cstring>

using namespace npy;

uint16_t npy::floatToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return 0x7fc0; // NaN stays NaN
  bits += 0x7fff + ((bits >> 16) & 1); // round to nearest even
  return uint16_t(bits >> 16);
}

float npy::bf16ToFloat(uint16_t bits) {
  uint32_t wide = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &wide, 4);
  return f;
}

uint16_t npy::floatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  uint16_t sign = (x >> 16) & 0x8000;
  int exp = int((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffff;
  if (((x >> 23) & 0xff) == 0xff)
    return sign | 0x7c00 | (mant ? 0x200 : 0);
  if (exp >= 31)
    return sign | 0x7c00;
  if (exp <= 0) { // subnormal half
    if (exp < -10)
      return sign;
    mant |= 0x800000;
    uint32_t shift = 14 - exp;
    uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1)))
      ++half;
    return sign | uint16_t(half);
  }
  uint32_t half = (uint32_t(exp) << 10) | (mant >> 13), rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
    ++half; // may carry into the exponent: still the right rounding
  return sign | uint16_t(half);
}

float npy::halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400));
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

double npy::elementAt(const Array &a, int64_t i) {
  const uint8_t *p = a.bytes() + i * elementSize(a.type);
  switch (a.type) {
  case DType::f64: { double v; std::memcpy(&v, p, 8); return v; }
  case DType::f32: { float v; std::memcpy(&v, p, 4); return v; }
  case DType::f16: { uint16_t v; std::memcpy(&v, p, 2); return halfToFloat(v); }
  case DType::bf16: { uint16_t v; std::memcpy(&v, p, 2); return bf16ToFloat(v); }
  case DType::i64: { int64_t v; std::memcpy(&v, p, 8); return double(v); }
  case DType::i32: { int32_t v; std::memcpy(&v, p, 4); return double(v); }
  case DType::i8: return double(int8_t(*p));
  }
  return 0;
}

std::vector<uint8_t> npy::encodeElement(DType type, double value) {
  std::vector<uint8_t> bytes(elementSize(type));
  switch (type) {
  case DType::f64: std::memcpy(bytes.data(), &value, 8); break;
  case DType::f32: { float x = float(value); std::memcpy(bytes.data(), &x, 4); break; }
  case DType::bf16: { uint16_t x = floatToBf16(float(value)); std::memcpy(bytes.data(), &x, 2); break; }
  case DType::f16: { uint16_t x = floatToHalf(float(value)); std::memcpy(bytes.data(), &x, 2); break; }
  case DType::i64: { int64_t x = int64_t(value); std::memcpy(bytes.data(), &x, 8); break; }
  case DType::i32: { int32_t x = int32_t(value); std::memcpy(bytes.data(), &x, 4); break; }
  case DType::i8: bytes[0] = uint8_t(int8_t(value)); break;
  }
  return bytes;
}

uint64_t npy::splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Array npy::randomArray(DType type, const std::vector<int64_t> &shape, uint64_t streamSeed,
                       double scale) {
  Array a;
  a.type = type;
  a.shape = shape;
  size_t size = elementSize(type);
  a.data.resize(size_t(a.numElements()) * size);
  uint64_t state = streamSeed;
  for (int64_t i = 0; i < a.numElements(); ++i) {
    uint64_t r = splitmix64(state);
    double u = double(r >> 11) * (1.0 / 9007199254740992.0);
    bool integer = type == DType::i32 || type == DType::i64;
    // Integers are small indices; bytes (packed weights) take every value.
    double value = type == DType::i8 ? double(int8_t(r & 0xff)) : integer ? double(r % 8) : (2.0 * u - 1.0) * scale;
    std::vector<uint8_t> element = encodeElement(type, value);
    std::memcpy(a.data.data() + i * size, element.data(), size);
  }
  return a;
}
