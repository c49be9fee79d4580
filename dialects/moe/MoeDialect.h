//===- MoeDialect.h - moe dialect declaration -------------------*- C++ -*-===//

#ifndef DIALECTS_MOE_MOEDIALECT_H
#define DIALECTS_MOE_MOEDIALECT_H

#include "mlir/IR/Dialect.h"

#include "dialects/moe/MoeDialect.h.inc"

#endif // DIALECTS_MOE_MOEDIALECT_H
