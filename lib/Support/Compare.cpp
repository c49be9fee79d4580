//===- Compare.cpp - an output against its reference ----------------------===//

#include "moe/Support/Compare.h"
#include "moe/Support/ArrayData.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace npy {

double defaultTolerance(DType type) {
  switch (type) {
  case DType::f64:
  case DType::f32: return 1e-5;
  case DType::f16: return 2e-3;
  case DType::bf16: return 8e-3;
  default: return 0;
  }
}

bool compare(const Array &ours, const Array &reference, double tolerance, Comparison &result, std::string &error) {
  if (reference.shape != ours.shape || reference.type != ours.type) {
    error = "the reference is " + name(reference.type) + " " + shapeString(reference.shape) + ", the output " +
            name(ours.type) + " " + shapeString(ours.shape);
    return false;
  }
  double maxRef = 0, maxDiff = 0;
  bool specialsMatch = true;
  for (int64_t e = 0; e < ours.numElements(); ++e) {
    double a = elementAt(ours, e), b = elementAt(reference, e);
    if (std::isnan(b) || std::isinf(b)) {
      specialsMatch &= std::isnan(b) ? std::isnan(a) : a == b;
      continue;
    }
    maxRef = std::max(maxRef, std::fabs(b));
    maxDiff = std::max(maxDiff, std::isfinite(a) ? std::fabs(a - b) : INFINITY);
  }
  result.relativeError = maxRef > 0 ? maxDiff / maxRef : maxDiff;
  result.specialsMatch = specialsMatch;
  result.tolerance = tolerance >= 0 ? tolerance : defaultTolerance(ours.type);
  return true;
}

std::string describe(const Comparison &c) {
  char text[128];
  std::snprintf(text, sizeof(text), "max rel err %.3e (tol %.0e)%s %s", c.relativeError, c.tolerance,
                c.specialsMatch ? "" : ", NaN/inf differ", c.ok() ? "ok" : "FAIL");
  return text;
}

} // namespace npy
