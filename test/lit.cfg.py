# -*- Python -*-
# lit configuration of the moe regression suite.

import os
import sys

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MOE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_obj_root, "test")
config.excludes = ["Inputs", "regressions", "conftest.py", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%moe_src_root", config.moe_src_root))
config.substitutions.append(("%moe_obj_root", config.moe_obj_root))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP", "CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moe_tools_dir, config.llvm_tools_dir]
tools = ["moe-opt", "moe-run", "moe-compile", "moe-exec", "moe-translate", "FileCheck", "not", "count", "split-file",
         "moe-fuzz-ir", "moe-fuzz-stablehlo", "moe-fuzz-onnx", "moe-fuzz-npy", "moe-fuzz-artifact-inputs"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

# The numerical tests run Python with numpy (scripts/test.sh installs it) and
# call moe-run through MOE_RUN.
python = lit_config.params.get("python", os.environ.get("MOE_PYTHON", sys.executable))
config.substitutions.append(("%moe_python", python))
config.environment["PYTHONPATH"] = os.path.join(config.moe_src_root, "python")
# The Python package's tools: this build's.
config.environment["MOE_COMPILER_BIN"] = config.moe_tools_dir
config.environment["MOE_RUN"] = os.path.join(config.moe_tools_dir, "moe-run")
config.environment["MOE_OPT"] = os.path.join(config.moe_tools_dir, "moe-opt")
config.environment["MOE_TRANSLATE"] = os.path.join(config.moe_tools_dir, "moe-translate")
# moe-compile's cache of compiled code is off (an empty MOE_CACHE_DIR): every
# test compiles what it tests; the cache's own tests pass --cache-dir.
config.environment["MOE_CACHE_DIR"] = ""
# Every MoE layer that moe-run and moe-compile (and the Python package
# through it) recognise is checked against the ops it was recognised in
# (--verify-raising); "strict" makes a refused layer an error, so a wrong
# matcher fails the test that imports it.
config.environment["MOE_VERIFY_RAISING"] = "strict"

# The fuzz targets are libFuzzer binaries in a MOE_ENABLE_FUZZING build and
# replay drivers otherwise (test/Fuzz/replay.test).
if config.moe_libfuzzer:
    config.available_features.add("libfuzzer")
if config.moe_sanitize:
    config.available_features.add("asan")

# A sanitizer build (MOE_SANITIZE) runs the same tests under ASan + UBSan.
# LeakSanitizer is off: MLIR keeps its uniqued storage until exit. User
# poisoning is off: LLVM's allocators poison memory from inline header code
# (instrumented here) that libMLIR (not instrumented) then uses.
# A failed allocation returns null (the tools report it) rather than abort.
config.environment["ASAN_OPTIONS"] = "detect_leaks=0:allow_user_poisoning=0:allocator_may_return_null=1"
config.environment["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"

# GPU artifacts run only where the CUDA driver loads; elsewhere moe-exec's
# "no GPU" error is what is tested.
try:
    import ctypes
    ctypes.CDLL("libcuda.so.1")
    config.available_features.add("cuda-driver")
except OSError:
    pass
