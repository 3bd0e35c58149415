"""The engine's order checks against a plain-Python reading of docs/format.md: an event repeats
when an earlier event of its run has its epoch and step (and is, or is not, a balance sample
alike), one of the two being known; it goes back when it is earlier than the event before it.

The engine looks for repeats only in runs that may hold one (gradlog.analysis.engine._repeats);
these logs are built to hold every kind: missing epochs or steps, runs interleaved, steps
restarting, repeats far apart."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlog.analysis.engine import _of_events

small = st.one_of(st.none(), st.integers(0, 3))
event = st.tuples(st.integers(0, 2), small, small, st.booleans())  # rid, epoch, step, sampled


def _expected(events: list[tuple[int, int | None, int | None, bool]]) -> dict[int, tuple]:
    """Per run: (repeats, first repeat's row), (events going back, first one's row)."""
    seen: dict[int, set] = {}
    last: dict[int, tuple] = {}
    out: dict[int, list] = {}
    for row, (rid, epoch, step, sampled) in enumerate(events):
        counts = out.setdefault(rid, [0, None, 0, None])
        key, earlier = (epoch, step, sampled), seen.setdefault(rid, set())
        if (epoch is not None or step is not None) and key in earlier:
            counts[0] += 1
            counts[1] = row if counts[1] is None else counts[1]
        earlier.add(key)
        if rid in last:
            before_epoch, before_step = last[rid]
            back = (epoch is not None and before_epoch is not None and epoch < before_epoch) or (
                epoch == before_epoch
                and step is not None
                and before_step is not None
                and step < before_step
            )
            if back:
                counts[2] += 1
                counts[3] = row if counts[3] is None else counts[3]
        last[rid] = (epoch, step)
    return {rid: tuple(c) for rid, c in out.items()}


@settings(max_examples=300, deadline=None)
@given(st.lists(event, min_size=1, max_size=40))
def test_repeats_and_going_back_are_found_in_every_run(events: list) -> None:
    frame = pl.DataFrame(
        {
            "rid": [e[0] for e in events],
            "row": list(range(len(events))),
            "epoch": [e[1] for e in events],
            "step": [e[2] for e in events],
            "mean_norm": [1.0] * len(events),
            "max_norm": [1.0] * len(events),
            "norm_band": ["healthy"] * len(events),
            "sampled": [e[3] for e in events],
        },
        schema_overrides={"rid": pl.Int64, "row": pl.Int64, "epoch": pl.Int64, "step": pl.Int64},
    )
    found = _of_events(frame.lazy()).collect()
    got = {
        r["rid"]: (r["n_repeat"] or 0, r["repeat_row"], r["n_back"], r["back_row"])
        for r in found.iter_rows(named=True)
    }
    assert got == _expected(events)
