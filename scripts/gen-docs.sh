#!/usr/bin/env bash
# Regenerates the op/attribute/pass reference from ODS into docs/generated/.
# test/Docs/generated-docs.test fails when the committed copy is stale.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"
"$ROOT/scripts/build.sh" moe-doc >/dev/null
mkdir -p "$ROOT/docs/generated"
cp "$BUILD/docs/moe/MoeDialect.md" "$BUILD/docs/moe/MoePasses.md" "$BUILD/docs/moe/MoeConversionPasses.md" \
   "$BUILD/docs/stablehlo/StablehloDialect.md" "$BUILD/docs/stablehlo/ChloDialect.md" "$ROOT/docs/generated/"
echo "[docs] wrote docs/generated/{MoeDialect,MoePasses,MoeConversionPasses,StablehloDialect,ChloDialect}.md"
