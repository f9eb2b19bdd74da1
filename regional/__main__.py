"""``tiercdn-regional``: run a regional cache node (origin shield)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from regional.app import DEFAULTS, make_app
from regional.settings import RegionalSettings
from shared.service.cachenode import main as run_node


def main(argv: Sequence[str] | None = None) -> int:
    return run_node(
        argv,
        prog="tiercdn-regional",
        description="Regional cache (origin shield): edges ask it; misses go to --upstream.",
        settings_class=RegionalSettings,
        make_app=make_app,
        module="regional",
        **DEFAULTS,
    )


if __name__ == "__main__":
    sys.exit(main())
