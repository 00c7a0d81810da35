"""`yuyue bench booking` on a tiny rush (a SQLite file of its own: the benchmark empties the
database it runs on). No timing is asserted: only what happened to the seats."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import bench
from tests.helpers import make_centre


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_tiny_rush_books_every_seat_once(tmp_path: Path, processes: int) -> None:
    # Two processes wait for each other at a barrier after connecting, then rush together.
    result = await bench.booking_rush(f"sqlite+aiosqlite:///{tmp_path / 'rush.db'}", make_centre(),
                                      users=24, seats=4, concurrency=4, processes=processes)
    assert (result.booked, result.full, result.errors) == (4, 20, 0)
    assert not result.overbooked and result.latency["n"] == 24
