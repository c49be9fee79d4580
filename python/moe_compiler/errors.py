"""Exceptions of moe_compiler, with the compiler's located diagnostics."""

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    column: int
    name: Optional[str] = None  # an ONNX node's name

    def __str__(self):
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where} ({self.name})" if self.name else where


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error", "warning", "remark" or "note"
    message: str
    location: Optional[Location] = None
    notes: List["Diagnostic"] = field(default_factory=list)

    @staticmethod
    def from_json(d):
        loc = d.get("location")
        return Diagnostic(d["severity"], d["message"],
                          Location(loc["file"], loc["line"], loc["column"], loc.get("name")) if loc else None,
                          [Diagnostic.from_json(n) for n in d.get("notes", [])])

    def __str__(self):
        head = f"{self.location}: " if self.location else ""
        lines = [f"{head}{self.severity}: {self.message}"]
        lines += ["  " + str(n) for n in self.notes]
        return "\n".join(lines)


class MoeCompilerError(Exception):
    """Base class of the errors this package raises."""


class CompileError(MoeCompilerError):
    """moe-compile rejected the input or failed to compile it.

    `diagnostics` holds every diagnostic it reported (errors with their
    locations first in the message); `output` is what it printed."""

    def __init__(self, message, diagnostics=(), output=""):
        self.diagnostics = list(diagnostics)
        self.output = output
        errors = [str(d) for d in self.diagnostics if d.severity == "error"]
        super().__init__("\n".join([message] + errors) if errors else message)


class UnsupportedSourceError(MoeCompilerError, TypeError):
    """compile() was given an object it does not know how to compile."""


class ArtifactLoadError(MoeCompilerError, OSError):
    """A compiled library could not be loaded, or it is not a moe-compile artifact."""


class ArtifactCallError(MoeCompilerError, ValueError):
    """Arguments that do not match the artifact's signature (count, dtype,
    shape, device, layout), or a call the artifact refused."""


class ArtifactRuntimeError(MoeCompilerError, RuntimeError):
    """The compiled code failed while running (for a GPU artifact: no CUDA
    driver, a CUDA error); the message is the runtime's."""
