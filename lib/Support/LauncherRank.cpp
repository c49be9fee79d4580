//===- LauncherRank.cpp - this process's rank under mpirun ----------------===//

#include "moe/Support/LauncherRank.h"

#include <cstdlib>

std::optional<std::string> support::launcherRank() {
  for (const char *name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char *value = std::getenv(name))
      return std::string(value);
  return std::nullopt;
}

std::string support::withRank(std::string path, const std::string &rank) {
  for (size_t at = path.find("%r"); at != std::string::npos; at = path.find("%r", at + rank.size()))
    path.replace(at, 2, rank);
  return path;
}
