"""The subcommands of ``secateurs``, each implemented by one module of ``secateurs.cli``."""

from __future__ import annotations

# subcommand -> module in secateurs.cli ("inspection" so no file shadows the stdlib ``inspect``)
SUBCOMMANDS = {"demo": "demo", "inspect": "inspection", "prune": "prune", "report": "report", "bench": "bench",
               "export": "export", "sensitivity": "sensitivity"}
