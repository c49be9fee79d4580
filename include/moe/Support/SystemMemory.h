//===- SystemMemory.h - how much memory a host may ask for ------*- C++ -*-===//
//
// Hosts (moe-run, moe-exec) check the buffers they are about to allocate
// against the machine's memory first, so a model or token count too large
// for the machine is an error message, not an allocation failure deep in a
// library. Standard C++ and POSIX only.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_SYSTEMMEMORY_H
#define MOE_SUPPORT_SYSTEMMEMORY_H

#include <cstdint>
#include <string>

namespace support {

/// The machine's physical memory in bytes (INT64_MAX when unknown).
int64_t physicalMemoryBytes();

/// False with `error` set ("<what> needs N GiB; this machine has M GiB")
/// when `bytes` exceeds the machine's physical memory.
bool fitsInMemory(int64_t bytes, const std::string &what, std::string &error);

/// Bytes as "2.0 TiB", "1.5 GiB", "12 MiB", "300 bytes".
std::string formatBytes(int64_t bytes);

} // namespace support

#endif // MOE_SUPPORT_SYSTEMMEMORY_H
