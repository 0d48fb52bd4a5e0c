"""``python -m cli``: the same as the ``stockstream`` console script."""

from __future__ import annotations

from cli.main import run

run()
