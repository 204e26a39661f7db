"""The serving lock between `pobox serve` workers and `pobox store copy` (pobox.status)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pobox.errors import InUse
from pobox.status import hold_serving_lock, no_server


def test_workers_share_the_lock_and_a_copy_excludes_them(tmp_path: Path) -> None:
    first = hold_serving_lock(tmp_path)
    second = hold_serving_lock(tmp_path)  # every worker of every server holds it shared
    with pytest.raises(InUse, match="stop it first"), no_server(tmp_path):
        pass
    os.close(first)
    os.close(second)
    with no_server(tmp_path), pytest.raises(InUse, match="store copy"):
        hold_serving_lock(tmp_path)
    os.close(hold_serving_lock(tmp_path))  # free again once the copy is done
