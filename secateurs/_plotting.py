"""Matplotlib (Agg backend, no display) and PNG bytes: the two helpers every plot in secateurs uses."""

from __future__ import annotations

import io
from typing import Any

from secateurs.errors import missing_dependency


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise missing_dependency("matplotlib", "report", "report plots") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()
