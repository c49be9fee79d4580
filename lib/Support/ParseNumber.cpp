//===- ParseNumber.cpp - numbers read from files and command lines --------===//

#include "moe/Support/ParseNumber.h"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string>

namespace support {

template <typename T> static std::optional<T> parseInteger(std::string_view text) {
  T value{};
  const char *end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end)
    return std::nullopt;
  return value;
}

std::optional<int64_t> parseInt64(std::string_view text) { return parseInteger<int64_t>(text); }

std::optional<uint64_t> parseUInt64(std::string_view text) { return parseInteger<uint64_t>(text); }

std::optional<double> parseDouble(std::string_view text) {
  if (text.empty())
    return std::nullopt;
  std::string copy(text); // strtod needs a terminated string
  char *end = nullptr;
  errno = 0;
  double value = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || errno == ERANGE)
    return std::nullopt;
  return value;
}

std::optional<int64_t> byteSize(const std::vector<int64_t> &shape, int64_t elementBytes) {
  int64_t bytes = elementBytes;
  for (int64_t size : shape)
    if (size < 0 || __builtin_mul_overflow(bytes, size, &bytes))
      return std::nullopt;
  return bytes;
}

} // namespace support
