"""``tiercdn-edge``: run an edge cache node."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from edge.app import DEFAULTS, make_app
from edge.settings import EdgeSettings
from shared.service.cachenode import main as run_node


def main(argv: Sequence[str] | None = None) -> int:
    return run_node(
        argv,
        prog="tiercdn-edge",
        description="Edge cache: players talk to it; misses go to --upstream (a regional).",
        settings_class=EdgeSettings,
        make_app=make_app,
        module="edge",
        **DEFAULTS,
    )


if __name__ == "__main__":
    sys.exit(main())
