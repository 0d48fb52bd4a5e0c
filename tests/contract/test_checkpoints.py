"""The relay's ``Checkpoints`` port: monotonic and durable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.sqlite import SQLiteStockItems
from application.ports import Checkpoints


def in_the_event_store(path: Path) -> tuple[Checkpoints, Callable[[], None]]:
    store = SQLiteStockItems(path / "events.db")
    return store.checkpoints(), store.close


@pytest.mark.parametrize("open_checkpoints", [in_the_event_store])
def test_checkpoints_only_move_forward_and_survive_reopening(
    tmp_path: Path, open_checkpoints: Callable[[Path], tuple[Checkpoints, Callable[[], None]]]
) -> None:
    checkpoints, close = open_checkpoints(tmp_path)
    assert checkpoints.position("relay") == 0
    checkpoints.advance("relay", 7)
    checkpoints.advance("relay", 3)  # another relay instance was behind: ignored
    checkpoints.advance("other", 1)
    assert (checkpoints.position("relay"), checkpoints.position("other")) == (7, 1)
    close()
    reopened, close = open_checkpoints(tmp_path)
    assert reopened.position("relay") == 7
    close()
