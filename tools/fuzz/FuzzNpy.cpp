//===- FuzzNpy.cpp - fuzz target: the .npy reader -------------------------===//
//
// Input: a .npy file (seeds: arrays of every supported type). Decode it, read
// every element, write it back and decode that again: it must round-trip.
//
//===----------------------------------------------------------------------===//

#include "moe/Support/ArrayData.h"
#include "moe/Support/Npy.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  npy::Array array;
  std::string error;
  if (!npy::parse(std::string_view(reinterpret_cast<const char *>(data), size), "fuzz.npy", array, error))
    return 0;
  double sum = 0;
  for (int64_t i = 0; i < array.numElements(); ++i)
    sum += npy::elementAt(array, i);
  (void)sum;
  char path[] = "/tmp/moe-fuzz-npy-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0)
    return 0;
  close(fd);
  npy::Array again;
  bool same = npy::write(path, array, error) && npy::read(path, again, error) && again.type == array.type &&
              again.shape == array.shape && again.data == array.data;
  std::remove(path);
  if (!same) {
    std::fprintf(stderr, "npy round trip changed the array: %s\n", error.c_str());
    std::abort();
  }
  return 0;
}
