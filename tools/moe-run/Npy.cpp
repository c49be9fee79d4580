//===- Npy.cpp - reading and writing NumPy .npy arrays --------------------===//

#include "Npy.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"
#include <cstring>

using namespace npy;
using llvm::StringRef;

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
  }
  return 0;
}

StringRef npy::descr(DType type) {
  switch (type) {
  case DType::f64: return "<f8";
  case DType::f32: return "<f4";
  case DType::f16: return "<f2";
  case DType::bf16: return "<u2";
  case DType::i64: return "<i8";
  case DType::i32: return "<i4";
  }
  return "";
}

StringRef npy::name(DType type) {
  switch (type) {
  case DType::f64: return "f64";
  case DType::f32: return "f32";
  case DType::f16: return "f16";
  case DType::bf16: return "bf16 (uint16 bits)";
  case DType::i64: return "i64";
  case DType::i32: return "i32";
  }
  return "";
}

int64_t Array::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string npy::shapeString(llvm::ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

static llvm::Error fail(StringRef path, const llvm::Twine &what) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 (path + ": " + what).str());
}

/// The value of `'key': value` in the header dict, up to the next top-level comma.
static std::optional<StringRef> headerField(StringRef header, StringRef key) {
  size_t at = header.find(("'" + key + "'").str());
  if (at == StringRef::npos)
    return std::nullopt;
  StringRef rest = header.drop_front(at + key.size() + 2).ltrim();
  if (!rest.consume_front(":"))
    return std::nullopt;
  rest = rest.ltrim();
  if (rest.starts_with("(")) // shape tuple
    return rest.take_until([](char c) { return c == ')'; }).drop_front();
  return rest.take_until([](char c) { return c == ',' || c == '}'; }).trim();
}

llvm::Expected<Array> npy::read(StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false);
  if (!buffer)
    return fail(path, "cannot open: " + buffer.getError().message());
  StringRef bytes = (*buffer)->getBuffer();
  if (!bytes.starts_with("\x93NUMPY") || bytes.size() < 10)
    return fail(path, "not a .npy file (missing the \\x93NUMPY magic)");
  uint8_t major = bytes[6];
  size_t headerLen, headerStart;
  if (major == 1) {
    headerLen = uint8_t(bytes[8]) | (uint8_t(bytes[9]) << 8);
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12)
      return fail(path, "truncated header");
    headerLen = uint32_t(uint8_t(bytes[8])) | (uint32_t(uint8_t(bytes[9])) << 8) |
                (uint32_t(uint8_t(bytes[10])) << 16) | (uint32_t(uint8_t(bytes[11])) << 24);
    headerStart = 12;
  } else {
    return fail(path, "unsupported .npy version " + llvm::Twine(int(major)));
  }
  if (bytes.size() < headerStart + headerLen)
    return fail(path, "truncated header");
  StringRef header = bytes.substr(headerStart, headerLen);

  Array array;
  std::optional<StringRef> d = headerField(header, "descr");
  if (!d)
    return fail(path, "header has no 'descr'");
  StringRef descrText = d->trim("'\" ");
  if (descrText == "<f8") array.type = DType::f64;
  else if (descrText == "<f4") array.type = DType::f32;
  else if (descrText == "<f2") array.type = DType::f16;
  else if (descrText == "<u2") array.type = DType::bf16;
  else if (descrText == "<i8") array.type = DType::i64;
  else if (descrText == "<i4") array.type = DType::i32;
  else
    return fail(path, "unsupported dtype '" + descrText +
                          "' (supported: <f8, <f4, <f2, <u2 for bf16 bits, <i8, <i4)");
  std::optional<StringRef> order = headerField(header, "fortran_order");
  if (order && order->trim() == "True")
    return fail(path, "Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
  std::optional<StringRef> shapeText = headerField(header, "shape");
  if (!shapeText)
    return fail(path, "header has no 'shape'");
  llvm::SmallVector<StringRef> parts;
  shapeText->split(parts, ',', -1, /*KeepEmpty=*/false);
  for (StringRef part : parts) {
    int64_t dim;
    if (part.trim().getAsInteger(10, dim) || dim < 0)
      return fail(path, "bad shape entry '" + part.trim() + "'");
    array.shape.push_back(dim);
  }
  size_t expected = size_t(array.numElements()) * elementSize(array.type);
  StringRef payload = bytes.drop_front(headerStart + headerLen);
  if (payload.size() != expected)
    return fail(path, "holds " + llvm::Twine(payload.size()) + " bytes of data, shape " +
                          shapeString(array.shape) + " needs " + llvm::Twine(expected));
  array.data.assign(payload.begin(), payload.end());
  return array;
}

llvm::Error npy::write(StringRef path, const Array &array) {
  std::string shape = "(";
  for (int64_t d : array.shape)
    shape += std::to_string(d) + ",";
  if (array.shape.size() > 1)
    shape.pop_back();
  shape += ")";
  std::string header = "{'descr': '" + descr(array.type).str() +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts on a 64-byte boundary.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return fail(path, "cannot write: " + ec.message());
  os << "\x93NUMPY" << char(1) << char(0) << char(header.size() & 0xff)
     << char((header.size() >> 8) & 0xff) << header;
  os.write(reinterpret_cast<const char *>(array.data.data()), array.data.size());
  return llvm::Error::success();
}
