//===- Npy.cpp - reading and writing NumPy .npy arrays --------------------===//

#include "moe/Support/Npy.h"
#include "moe/Support/ParseNumber.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace npy;

size_t npy::elementSize(DType type) {
  switch (type) {
  case DType::f64:
  case DType::i64:
    return 8;
  case DType::f32:
  case DType::i32:
    return 4;
  case DType::f16:
  case DType::bf16:
    return 2;
  case DType::i8:
    return 1;
  }
  return 0;
}

std::string npy::descr(DType type) {
  switch (type) {
  case DType::f64: return "<f8";
  case DType::f32: return "<f4";
  case DType::f16: return "<f2";
  case DType::bf16: return "<u2";
  case DType::i64: return "<i8";
  case DType::i32: return "<i4";
  case DType::i8: return "|i1";
  }
  return "";
}

std::string npy::name(DType type) {
  switch (type) {
  case DType::f64: return "f64";
  case DType::f32: return "f32";
  case DType::f16: return "f16";
  case DType::bf16: return "bf16 (uint16 bits)";
  case DType::i64: return "i64";
  case DType::i32: return "i32";
  case DType::i8: return "i8";
  }
  return "";
}

static constexpr DType kAllTypes[] = {DType::f64, DType::f32, DType::f16, DType::bf16,
                                      DType::i64, DType::i32, DType::i8};

std::string npy::mlirName(DType type) {
  switch (type) {
  case DType::f64: return "f64";
  case DType::f32: return "f32";
  case DType::f16: return "f16";
  case DType::bf16: return "bf16";
  case DType::i64: return "i64";
  case DType::i32: return "i32";
  case DType::i8: return "i8";
  }
  return "";
}

std::optional<DType> npy::fromMlirName(const std::string &name) {
  for (DType t : kAllTypes)
    if (name == mlirName(t))
      return t;
  return std::nullopt;
}

int64_t Array::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string npy::shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

static bool fail(const std::string &path, const std::string &what, std::string &error) {
  error = path + ": " + what;
  return false;
}

static std::string trim(const std::string &s, const char *chars = " \t\n") {
  size_t b = s.find_first_not_of(chars), e = s.find_last_not_of(chars);
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

/// The value of `'key': value` in the header dict, up to the next top-level comma.
static std::optional<std::string> headerField(const std::string &header, const std::string &key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos)
    return std::nullopt;
  size_t colon = header.find_first_not_of(" ", at + key.size() + 2);
  if (colon == std::string::npos || header[colon] != ':')
    return std::nullopt;
  size_t start = header.find_first_not_of(" ", colon + 1);
  if (start == std::string::npos)
    return std::nullopt;
  if (header[start] == '(') { // shape tuple
    size_t close = header.find(')', start);
    if (close == std::string::npos)
      return std::nullopt;
    return header.substr(start + 1, close - start - 1);
  }
  size_t end = header.find_first_of(",}", start);
  return trim(header.substr(start, end == std::string::npos ? std::string::npos : end - start));
}

bool npy::read(const std::string &path, Array &array, std::string &error) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(path, std::string("cannot open: ") + std::strerror(errno), error);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse(bytes, path, array, error);
}

/// Parses the header of `bytes` into `array` (type and shape), checks the
/// payload's size, and sets `dataStart` to where the payload begins.
static bool parseHeader(std::string_view bytes, const std::string &path, Array &array, size_t &dataStart,
                        std::string &error);

bool npy::parse(std::string_view bytes, const std::string &path, Array &array, std::string &error) {
  size_t dataStart = 0;
  if (!parseHeader(bytes, path, array, dataStart, error))
    return false;
  array.data.assign(bytes.begin() + dataStart, bytes.end());
  return true;
}

bool npy::map(const std::string &path, Array &array, std::string &error) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    return fail(path, std::string("cannot open: ") + std::strerror(errno), error);
  struct stat info;
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) || info.st_size == 0) {
    ::close(fd);
    return read(path, array, error); // not a mappable file: read it (and report what is wrong)
  }
  size_t size = size_t(info.st_size);
  void *base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED)
    return read(path, array, error);
  size_t dataStart = 0;
  if (!parseHeader(std::string_view(static_cast<const char *>(base), size), path, array, dataStart, error)) {
    ::munmap(base, size);
    return false;
  }
  array.data.clear();
  array.mapped = std::shared_ptr<uint8_t>(static_cast<uint8_t *>(base) + dataStart,
                                          [base, size](uint8_t *) { ::munmap(base, size); });
  return true;
}

static bool parseHeader(std::string_view bytes, const std::string &path, Array &array, size_t &dataStart,
                        std::string &error) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    return fail(path, "not a .npy file (missing the \\x93NUMPY magic)", error);
  uint8_t major = bytes[6];
  size_t headerLen, headerStart;
  if (major == 1) {
    headerLen = uint8_t(bytes[8]) | (uint8_t(bytes[9]) << 8);
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12)
      return fail(path, "truncated header", error);
    headerLen = uint32_t(uint8_t(bytes[8])) | (uint32_t(uint8_t(bytes[9])) << 8) |
                (uint32_t(uint8_t(bytes[10])) << 16) | (uint32_t(uint8_t(bytes[11])) << 24);
    headerStart = 12;
  } else {
    return fail(path, "unsupported .npy version " + std::to_string(int(major)), error);
  }
  if (bytes.size() < headerStart + headerLen)
    return fail(path, "truncated header", error);
  std::string header(bytes.substr(headerStart, headerLen));

  array = Array();
  std::optional<std::string> d = headerField(header, "descr");
  if (!d)
    return fail(path, "header has no 'descr'", error);
  std::string descrText = trim(*d, "'\" ");
  bool known = false;
  for (DType t : kAllTypes)
    if (descrText == descr(t)) {
      array.type = t;
      known = true;
    }
  // Packed weights are usually saved as uint8: the same bytes.
  if (descrText == "|u1") {
    array.type = DType::i8;
    known = true;
  }
  if (!known)
    return fail(path, "unsupported dtype '" + descrText +
                          "' (supported: <f8, <f4, <f2, <u2 for bf16 bits, <i8, <i4, |i1 or |u1 for i8)", error);
  std::optional<std::string> order = headerField(header, "fortran_order");
  if (order && trim(*order) == "True")
    return fail(path, "Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
                error);
  std::optional<std::string> shapeText = headerField(header, "shape");
  if (!shapeText)
    return fail(path, "header has no 'shape'", error);
  std::stringstream parts(*shapeText);
  for (std::string part; std::getline(parts, part, ',');) {
    part = trim(part);
    if (part.empty())
      continue;
    std::optional<int64_t> size = support::parseInt64(part);
    if (!size || *size < 0)
      return fail(path, "bad shape entry '" + part + "'", error);
    array.shape.push_back(*size);
  }
  // The header's shape is checked against the bytes present before anything
  // trusts it: a lying header is an error, not an out-of-bounds read.
  std::optional<int64_t> expected = support::byteSize(array.shape, elementSize(array.type));
  size_t payload = bytes.size() - headerStart - headerLen;
  if (!expected)
    return fail(path, "shape " + shapeString(array.shape) + " is too large", error);
  if (payload != uint64_t(*expected))
    return fail(path, "holds " + std::to_string(payload) + " bytes of data, shape " +
                          shapeString(array.shape) + " needs " + std::to_string(*expected),
                error);
  dataStart = headerStart + headerLen;
  return true;
}

bool npy::write(const std::string &path, const Array &array, std::string &error) {
  std::string shape = "(";
  for (int64_t d : array.shape)
    shape += std::to_string(d) + ",";
  if (array.shape.size() > 1)
    shape.pop_back();
  shape += ")";
  std::string header = "{'descr': '" + descr(array.type) +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts on a 64-byte boundary.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out)
    return fail(path, "cannot write", error);
  out << "\x93NUMPY" << char(1) << char(0) << char(header.size() & 0xff)
      << char((header.size() >> 8) & 0xff) << header;
  out.write(reinterpret_cast<const char *>(array.bytes()), std::streamsize(array.mapped ? array.byteCount()
                                                                                        : array.data.size()));
  return out.good() || fail(path, "write failed", error);
}
