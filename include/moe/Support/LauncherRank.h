//===- LauncherRank.h - this process's rank under mpirun --------*- C++ -*-===//
//
// The hosts (moe-run, moe-exec) read and write per-rank files when an
// expert-parallel program runs under mpirun: `%r` in a path becomes the
// rank the launcher gave the process. Read from the launcher's environment
// (OpenMPI, PMIx, MPICH/PMI), so the hosts need no MPI. Standard C++ only.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_LAUNCHERRANK_H
#define MOE_SUPPORT_LAUNCHERRANK_H

#include <optional>
#include <string>

namespace support {

/// The rank mpirun gave this process, or nothing outside mpirun.
std::optional<std::string> launcherRank();

/// `path` with every `%r` replaced by `rank`.
std::string withRank(std::string path, const std::string &rank);

} // namespace support

#endif // MOE_SUPPORT_LAUNCHERRANK_H
