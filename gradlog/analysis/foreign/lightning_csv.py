"""Lightning's ``CSVLogger`` log (``metrics.csv``): every logged point, in long form.

The file is wide and sparse: ``epoch``, ``step`` and one column per key ever logged, each row
holding the keys logged together at one step, every other cell empty (Lightning rewrites the
header when a new key appears). Each non-empty cell is one point.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from gradlog.analysis.foreign.scalars import LIGHTNING_CSV, SCALARS_SCHEMA, Scalars
from gradlog.analysis.readers.loaded import first_line, polars_path
from gradlog.errors import LogFormatError

METRICS_FILE = "metrics.csv"  # CSVLogger's name for it, in version_N/
INDEX = ("epoch", "step")
_ROW = "__row"


def read_lightning_csv(path: str) -> Scalars:
    """Every point of a ``metrics.csv``, or of every ``metrics.csv`` below a directory.

    A file's run is its directory's name (``version_0``) when it is named ``metrics.csv``,
    else the file's stem; below a directory, the file's directory relative to it.
    """
    if os.path.isfile(path):
        name = Path(path)
        run = Path(os.path.abspath(path)).parent.name if name.name == METRICS_FILE else name.stem
        return Scalars(path=path, kind=LIGHTNING_CSV, frame=_read(path, run))
    if not os.path.isdir(path):
        raise LogFormatError("no such file or directory", path)
    top = Path(os.path.abspath(path)).name
    frames = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        if METRICS_FILE in names:
            relative = os.path.relpath(folder, path)
            run = top if relative == "." else Path(relative).as_posix()
            frames.append(_read(os.path.join(folder, METRICS_FILE), run))
    if not frames:
        raise LogFormatError(f"no Lightning CSVLogger log ({METRICS_FILE}) below it", path)
    return Scalars(path=path, kind=LIGHTNING_CSV, frame=pl.concat(frames))


def _read(path: str, run: str) -> pl.DataFrame:
    try:
        # Strings first: a cell that is not a number is then named, not silently nulled.
        wide = pl.read_csv(polars_path(path), infer_schema=False)
    except pl.exceptions.NoDataError:
        raise LogFormatError("empty: not a Lightning CSVLogger log", path) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise LogFormatError(f"not a readable CSV file: {first_line(exc)}", path) from None
    if "step" not in wide.columns:
        raise LogFormatError(
            "no 'step' column: not a Lightning CSVLogger log (its columns are epoch, step "
            "and one per logged key)",
            path,
        )
    keys = [c for c in wide.columns if c not in INDEX]
    index = [c for c in INDEX if c in wide.columns]
    numbers = wide.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias(_ROW),
        *(pl.col(c).cast(pl.Float64, strict=False) for c in (*index, *keys)),
    )
    _check_numbers(path, wide, numbers)
    for column in index:
        whole = numbers[column].drop_nulls()
        if (whole != whole.floor()).any():
            raise LogFormatError(f"column '{column}' holds a number that is not whole", path)
    if not keys:
        return pl.DataFrame(schema=SCALARS_SCHEMA)
    long = (
        numbers.unpivot(index=[_ROW, *index], on=keys, variable_name="tag", value_name="value")
        .drop_nulls("value")
        .sort(_ROW, maintain_order=True)  # back to the order the rows were written in
    )
    return long.select(
        pl.lit(run, pl.String).alias("run"),
        _integer(long, "step"),
        _integer(long, "epoch"),
        pl.col("tag"),
        pl.col("value"),
        pl.lit(None, pl.Float64).alias("time"),
    ).cast(dict(SCALARS_SCHEMA))


def _integer(frame: pl.DataFrame, name: str) -> pl.Expr:
    if name in frame.columns:
        return pl.col(name).cast(pl.Int64)
    return pl.lit(None, pl.Int64).alias(name)


def _check_numbers(path: str, wide: pl.DataFrame, numbers: pl.DataFrame) -> None:
    """A cell that holds text which is not a number is an error, named by line and column."""
    for column in wide.columns:
        lost = wide[column].is_not_null() & numbers[column].is_null()
        if lost.any():
            row = int(lost.arg_true()[0])
            cell = wide[column][row]
            raise LogFormatError(
                f"{cell!r} is not a number", path, line=row + 2, field=column
            )  # line 1 is the header
