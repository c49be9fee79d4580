"""Checks the dependency rules of docs/architecture.md on a source tree.

Every library belongs to a layer (by the folder its CMakeLists.txt is in),
and a layer may link and #include only the layers the table below allows:
dependencies point down, front ends and lowerings never see each other, and
the runtime and support libraries use no LLVM or MLIR at all. Prints one
line per violation (file:line: what, why) and exits 1 when there is one.

Usage: check_dependencies.py ROOT
"""

import os
import re
import sys

# Folder (relative to the root) -> layer. The longest matching prefix wins.
LAYER_OF_FOLDER = {
    "dialects": "Dialect",
    "lib/Support": "Support",
    "lib/Runtime": "Runtime",
    "lib/Utils": "Utils",
    "lib/Transforms": "Transforms",
    "lib/Conversion": "Conversion",
    "lib/Pipelines": "Pipelines",
    "lib/Frontend": "Frontend",
    "lib/InitAll": "InitAll",
    "lib/Tools": "Tools",
}

# Header path prefix (as written in #include "...") -> layer.
LAYER_OF_HEADER = {
    "dialects/": "Dialect",
    "moe/Support/": "Support",
    "moe/Runtime/": "Runtime",
    "moe/Utils/": "Utils",
    "moe/Transforms/": "Transforms",
    "moe/Conversion/": "Conversion",
    "moe/Pipelines/": "Pipelines",
    "moe/Frontend/": "Frontend",
    "moe/InitAll.h": "InitAll",
    "moe/Tools/": "Tools",
}

# Layer -> the other layers it may use. Front ends and lowerings are peers
# that never see each other; only Tools sees both.
ALLOWED = {
    "Support": set(),
    "Runtime": {"Runtime"},
    "Dialect": set(),
    "Utils": set(),
    "Transforms": {"Dialect", "Utils"},
    "Conversion": {"Dialect", "Utils", "Transforms"},
    "Pipelines": {"Dialect", "Utils", "Transforms", "Conversion"},
    "Frontend": {"Dialect", "Utils", "Transforms", "Support"},
    "InitAll": {"Dialect", "Utils", "Transforms", "Conversion", "Pipelines"},
    "Tools": {"Dialect", "Utils", "Transforms", "Conversion", "Pipelines", "Frontend", "Support", "InitAll"},
}

# Layers built without LLVM or MLIR (they run where only a driver exists).
NO_LLVM = {"Support", "Runtime"}

SOURCE = re.compile(r"\.(cpp|h|td)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
ANGLE_INCLUDE = re.compile(r"^\s*#\s*include\s+<(mlir|llvm)/")
LIBRARY = re.compile(r"add_(?:mlir_library|library|moe_conversion_library)\(\s*([A-Za-z0-9_]+)(.*?)\)", re.S)
LINK_LIBS = re.compile(r"LINK_LIBS\s+(?:PUBLIC|PRIVATE)?(.*)", re.S)
TARGET_LINK = re.compile(r"target_link_libraries\(\s*([A-Za-z0-9_]+)\s+(?:PUBLIC|PRIVATE|INTERFACE)?(.*?)\)", re.S)


def layer_of_path(rel):
    best = None
    for folder, layer in LAYER_OF_FOLDER.items():
        if rel == folder or rel.startswith(folder + "/"):
            if best is None or len(folder) > len(best[0]):
                best = (folder, layer)
    return best[1] if best else None


def layer_of_header(header):
    for prefix, layer in LAYER_OF_HEADER.items():
        if header.startswith(prefix):
            return layer
    return None


def uses_allowed(layer, used):
    return used == layer or used in ALLOWED[layer]


def check_includes(root, violations):
    for top in ("dialects", "lib"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not SOURCE.search(name):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)
                layer = layer_of_path(rel)
                if layer is None:
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        if layer in NO_LLVM and ANGLE_INCLUDE.match(line):
                            violations.append(f"{rel}:{number}: {layer} includes an LLVM/MLIR header (it must build without them)")
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        header = m.group(1)
                        if layer in NO_LLVM and header.startswith(("mlir/", "llvm/")):
                            violations.append(f"{rel}:{number}: {layer} includes {header} (it must build without LLVM/MLIR)")
                        used = layer_of_header(header)
                        if used and not uses_allowed(layer, used):
                            violations.append(f"{rel}:{number}: {layer} includes {header} ({used}); {layer} may use {sorted(ALLOWED[layer]) or 'nothing of ours'}")


def read_libraries(root):
    """Library name -> (layer, CMakeLists path, [linked names])."""
    libraries = {}
    links = []
    for top in ("dialects", "lib"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            if "CMakeLists.txt" not in files:
                continue
            path = os.path.join(folder, "CMakeLists.txt")
            rel = os.path.relpath(path, root)
            layer = layer_of_path(os.path.dirname(rel))
            text = re.sub(r"#[^\n]*", "", open(path, encoding="utf-8").read())
            for m in LIBRARY.finditer(text):
                linked = []
                l = LINK_LIBS.search(m.group(2))
                if l:
                    linked = l.group(1).split()
                libraries[m.group(1)] = (layer, rel)
                links.append((m.group(1), rel, linked))
            for m in TARGET_LINK.finditer(text):
                links.append((m.group(1), rel, m.group(2).split()))
    return libraries, links


def check_links(root, violations):
    libraries, links = read_libraries(root)
    for name, rel, linked in links:
        if name not in libraries:
            continue
        layer = libraries[name][0]
        for dep in linked:
            if layer in NO_LLVM and dep in ("MLIR", "LLVM", "${MOE_MLIR_LIBS}"):
                violations.append(f"{rel}: {name} ({layer}) links {dep} (it must build without LLVM/MLIR)")
            if dep not in libraries:
                continue
            used = libraries[dep][0]
            if not uses_allowed(layer, used):
                violations.append(f"{rel}: {name} ({layer}) links {dep} ({used}); {layer} may use {sorted(ALLOWED[layer]) or 'nothing of ours'}")
    return libraries


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = sys.argv[1]
    violations = []
    libraries = check_links(root, violations)
    check_includes(root, violations)
    for v in violations:
        print(v)
    print(f"{len(libraries)} libraries, {len(violations)} dependency violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
