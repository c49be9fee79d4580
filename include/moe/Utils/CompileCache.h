//===- CompileCache.h - compiled code on disk, keyed by its inputs -*- C++ -*-===//
//
// Kernels (cubins) and host objects are expensive to build and depend only
// on their IR and the compile options: a directory of entries keyed by a hash
// of both lets a second compile of a model, or of another model with the same
// layer shapes, skip ptxas and LLVM. Entries are written to a temporary file
// and renamed into place (concurrent compiles never see half an entry) and
// carry a checksum of their payload, verified on every read (a corrupted
// entry is dropped and rebuilt).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_UTILS_COMPILECACHE_H
#define MOE_UTILS_COMPILECACHE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>
#include <string>

namespace mlir::moe {

class CompileCache {
public:
  /// A cache in `directory` (created on the first store); empty: disabled.
  explicit CompileCache(std::string directory) : directory(std::move(directory)) {}

  /// MOE_CACHE_DIR, else $XDG_CACHE_HOME/moe-compiler, else
  /// $HOME/.cache/moe-compiler (empty when none is set).
  static std::string defaultDirectory();
  /// A hex key naming everything that determines an entry's payload: the
  /// parts given plus the identity of the running compiler (its executable
  /// and the LLVM version), so that a rebuilt compiler never reads entries
  /// an older one wrote.
  /// `text`, when given, writes more of the key (a module's IR) straight
  /// into the hash, never held in memory whole.
  static std::string key(llvm::ArrayRef<llvm::StringRef> parts,
                         llvm::function_ref<void(llvm::raw_ostream &)> text = {});

  bool enabled() const { return !directory.empty(); }
  const std::string &path() const { return directory; }

  /// The payload stored under `kind`/`key`, if present and intact.
  std::optional<std::string> lookup(llvm::StringRef kind, llvm::StringRef key);
  /// Stores `payload`; a failure to write leaves the cache as it was (the
  /// cache only saves time) and is counted.
  void store(llvm::StringRef kind, llvm::StringRef key, llvm::StringRef payload);

  unsigned hits = 0, misses = 0, rejected = 0, storeFailures = 0;

private:
  std::string entryPath(llvm::StringRef kind, llvm::StringRef key) const;
  std::string directory;
};

} // namespace mlir::moe

#endif // MOE_UTILS_COMPILECACHE_H
