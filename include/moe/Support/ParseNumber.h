//===- ParseNumber.h - numbers read from files and command lines -*- C++ -*-===//
//
// Text from a file (an .npy header, an ONNX external-data field, an
// artifact's signature) or a command line becomes a number only when all of
// it is one that fits: no exceptions (the tools are built without them), no
// silent wrap-around. And the byte size of a shape, checked for overflow
// before anything is allocated for it. Standard C++ only.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_PARSENUMBER_H
#define MOE_SUPPORT_PARSENUMBER_H

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace support {

/// The whole of `text` as a decimal integer, or nullopt (empty, other
/// characters, out of range).
std::optional<int64_t> parseInt64(std::string_view text);
std::optional<uint64_t> parseUInt64(std::string_view text);
/// The whole of `text` as a floating-point number (decimal or exponent
/// form, inf, nan), or nullopt.
std::optional<double> parseDouble(std::string_view text);

/// elementBytes times the product of `shape`, or nullopt when a size is
/// negative or the product does not fit in int64.
std::optional<int64_t> byteSize(const std::vector<int64_t> &shape, int64_t elementBytes);

} // namespace support

#endif // MOE_SUPPORT_PARSENUMBER_H
