//===- CompileCache.cpp - compiled code on disk, keyed by its inputs ------===//

#include "moe/Utils/CompileCache.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/BLAKE3.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <cstring>

using namespace mlir::moe;

namespace {
/// Entry layout: magic, payload length (8 bytes, little endian), BLAKE3 of
/// the payload (32 bytes), payload.
constexpr llvm::StringLiteral kMagic = "MOECACHE1\n";
constexpr size_t kHeader = kMagic.size() + 8 + 32;

std::string checksum(llvm::StringRef payload) {
  auto hash = llvm::BLAKE3::hash(llvm::arrayRefFromStringRef(payload));
  return std::string(hash.begin(), hash.end());
}

/// The compiler's own identity: a hash of its executable (computed once).
const std::string &compilerIdentity() {
  static const std::string identity = [] {
    std::string self = llvm::sys::fs::getMainExecutable(nullptr, nullptr);
    llvm::BLAKE3 hasher;
    hasher.update(LLVM_VERSION_STRING);
    if (auto buffer = llvm::MemoryBuffer::getFile(self, /*IsText=*/false, /*RequiresNullTerminator=*/false))
      hasher.update(llvm::arrayRefFromStringRef((*buffer)->getBuffer()));
    else
      hasher.update(self); // unreadable: at least the path
    auto hash = hasher.final();
    return llvm::toHex(hash, /*LowerCase=*/true);
  }();
  return identity;
}
} // namespace

std::string CompileCache::defaultDirectory() {
  if (const char *dir = std::getenv("MOE_CACHE_DIR"))
    return dir;
  llvm::SmallString<128> path;
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    path = xdg;
  else if (const char *home = std::getenv("HOME"); home && *home)
    llvm::sys::path::append(path, home, ".cache");
  else
    return "";
  llvm::sys::path::append(path, "moe-compiler");
  return path.str().str();
}

namespace {
/// A stream whose bytes go into a hash.
class HashingStream : public llvm::raw_ostream {
public:
  explicit HashingStream(llvm::BLAKE3 &hasher) : hasher(hasher) { SetUnbuffered(); }

private:
  void write_impl(const char *ptr, size_t size) override {
    hasher.update(llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(ptr), size));
    written += size;
  }
  uint64_t current_pos() const override { return written; }
  llvm::BLAKE3 &hasher;
  uint64_t written = 0;
};
} // namespace

std::string CompileCache::key(llvm::ArrayRef<llvm::StringRef> parts,
                              llvm::function_ref<void(llvm::raw_ostream &)> text) {
  llvm::BLAKE3 hasher;
  hasher.update(compilerIdentity());
  for (llvm::StringRef part : parts) {
    // Lengths first: ("ab", "c") and ("a", "bc") differ.
    uint64_t size = part.size();
    hasher.update(llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(&size), sizeof(size)));
    hasher.update(part);
  }
  if (text) {
    HashingStream os(hasher);
    text(os);
  }
  auto hash = hasher.final();
  return llvm::toHex(hash, /*LowerCase=*/true);
}

std::string CompileCache::entryPath(llvm::StringRef kind, llvm::StringRef key) const {
  llvm::SmallString<256> path(directory);
  llvm::sys::path::append(path, kind, key.take_front(2), key);
  return path.str().str();
}

std::optional<std::string> CompileCache::lookup(llvm::StringRef kind, llvm::StringRef key) {
  if (!enabled())
    return std::nullopt;
  std::string path = entryPath(kind, key);
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!buffer) {
    ++misses;
    return std::nullopt;
  }
  llvm::StringRef data = (*buffer)->getBuffer();
  uint64_t size = 0;
  bool intact = data.size() >= kHeader && data.starts_with(kMagic);
  if (intact) {
    std::memcpy(&size, data.data() + kMagic.size(), sizeof(size));
    intact = size == data.size() - kHeader &&
             checksum(data.drop_front(kHeader)) == data.substr(kMagic.size() + 8, 32);
  }
  if (!intact) {
    // Truncated or overwritten: drop it, the caller rebuilds and stores it.
    llvm::sys::fs::remove(path);
    ++rejected;
    ++misses;
    return std::nullopt;
  }
  ++hits;
  return data.drop_front(kHeader).str();
}

void CompileCache::store(llvm::StringRef kind, llvm::StringRef key, llvm::StringRef payload) {
  if (!enabled())
    return;
  std::string path = entryPath(kind, key);
  llvm::SmallString<256> dir(path);
  llvm::sys::path::remove_filename(dir);
  if (llvm::sys::fs::create_directories(dir)) {
    ++storeFailures;
    return;
  }
  // A unique temporary in the same directory, renamed over the entry: a
  // reader sees the old entry, no entry or the whole new one.
  int fd;
  llvm::SmallString<256> temp;
  if (llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%%%", fd, temp)) {
    ++storeFailures;
    return;
  }
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    uint64_t size = payload.size();
    os << kMagic;
    os.write(reinterpret_cast<const char *>(&size), sizeof(size));
    os << checksum(payload) << payload;
    os.flush();
    if (os.has_error()) {
      os.clear_error();
      llvm::sys::fs::remove(temp);
      ++storeFailures;
      return;
    }
  }
  if (llvm::sys::fs::rename(temp, path)) {
    llvm::sys::fs::remove(temp);
    ++storeFailures;
  }
}
