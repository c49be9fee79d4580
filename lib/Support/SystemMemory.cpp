//===- SystemMemory.cpp - how much memory a host may ask for --------------===//

#include "moe/Support/SystemMemory.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>

int64_t support::physicalMemoryBytes() {
  long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || pageSize <= 0 || pages > INT64_MAX / pageSize)
    return INT64_MAX;
  return int64_t(pages) * pageSize;
}

std::string support::formatBytes(int64_t bytes) {
  char text[64];
  if (bytes >= (int64_t(1) << 40))
    std::snprintf(text, sizeof(text), "%.1f TiB", double(bytes) / double(int64_t(1) << 40));
  else if (bytes >= (int64_t(1) << 30))
    std::snprintf(text, sizeof(text), "%.1f GiB", double(bytes) / double(int64_t(1) << 30));
  else if (bytes >= (int64_t(1) << 20))
    std::snprintf(text, sizeof(text), "%.1f MiB", double(bytes) / double(int64_t(1) << 20));
  else
    std::snprintf(text, sizeof(text), "%lld bytes", static_cast<long long>(bytes));
  return text;
}

bool support::fitsInMemory(int64_t bytes, const std::string &what, std::string &error) {
  int64_t available = physicalMemoryBytes();
  if (bytes <= available)
    return true;
  error = what + " needs " + formatBytes(bytes) + "; this machine has " + formatBytes(available);
  return false;
}
