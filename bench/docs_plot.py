"""Plots the benchmarks write into docs/: matplotlib without a display, or
None when it is not installed (the table is printed either way)."""

import os


def pyplot():
    try:
        import matplotlib
    except ImportError:
        print("matplotlib missing: no plot")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, name):
    """Writes `fig` as docs/`name` and says so."""
    out = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", name))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
