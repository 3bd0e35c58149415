"""Another tool's scalars as gradlog's records: one run record per run, one event per step.

Whole columns at a time: a TensorBoard log of 100,000 steps and a few hundred tags is millions
of points, and Python's per-row work on them would take longer than the report itself.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from gradlog.analysis.foreign.mapping import (
    GLOBAL_FIELDS,
    IGNORE,
    MAP_HINT,
    PAIR_FIELD,
    PARAM_FIELD,
    TAGS_LISTED,
    TASK_FIELDS,
    Mapping,
)
from gradlog.analysis.foreign.scalars import READ_TAG, SOURCE_TAG, Scalars
from gradlog.analysis.readers.loaded import LoadedLog
from gradlog.classify import LAYER_EXPLODING, LAYER_VANISHING
from gradlog.errors import LogFormatError
from gradlog.format import KIND_EVENT, KIND_RUN, SCHEMA_VERSION
from gradlog.frames import COLUMNS, records_to_frame, storage_schema

_KEYS = pl.Schema(
    {
        "tag": pl.String,
        "rule": pl.Int64,
        "field": pl.String,
        "task": pl.String,
        "a": pl.String,
        "b": pl.String,
        "param": pl.String,
    }
)

_QUANTITY = ["run", "step", "field", "task", "a", "b", "param"]


def to_log(scalars: Scalars, mapping: Mapping, read: dict[str, str] | None = None) -> LoadedLog:
    """``scalars`` as a log of gradlog's schema; raises LogFormatError when no tag maps.

    ``read``: what the reader knows of where a field came from (``{"epoch": "..."}``), for the
    run record's tags beside the templates'.
    """
    frame = scalars.frame
    if frame.get_column("run").null_count():  # a run record needs an id: the file's name
        frame = frame.with_columns(pl.col("run").fill_null(Path(scalars.path).name or "run"))
    tags = frame.get_column("tag").unique(maintain_order=True).to_list()
    keys = _winners(_tag_table(tags, mapping))
    if keys.height == 0:
        raise LogFormatError(_nothing_maps(tags), scalars.path)
    notes = list(scalars.notes)
    points = frame.join(keys, on="tag", how="inner", maintain_order="left")
    stepless = points.filter(pl.col("step").is_null()).height
    if stepless:
        notes.append(f"{scalars.path}: {stepless} mapped values without a step left out")
        points = points.filter(pl.col("step").is_not_null())
    points = _last_values(points)
    runs = frame.get_column("run").unique(maintain_order=True).to_list()
    # Only the total norm (Hugging Face's grad_norm): the gradient seen as one tensor, whose mean
    # and largest per-tensor norm are that norm, so that the report's statistics part is there.
    fields = set(keys.get_column("field").to_list())
    whole = "total_norm" in fields and not fields & {"mean_norm", "max_norm", PARAM_FIELD}
    events = _events(points, whole)
    used = keys.select("rule", "field").unique().sort("rule")
    sources = _read_tags(scalars.kind, used, mapping)
    if whole:
        total = next(t["value"] for t in sources if t["key"] == READ_TAG + "total_norm")
        said = f"{total} (the total norm: no per-parameter norms)"
        sources += [{"key": READ_TAG + f, "value": said} for f in ("mean_norm", "max_norm")]
    sources += [{"key": READ_TAG + k, "value": v} for k, v in (read or {}).items()]
    run_frame = records_to_frame([_run_record(r, points, events, sources) for r in runs])
    order = pl.DataFrame(
        {"run": runs, "_ord": range(len(runs))}, schema_overrides={"run": pl.String}
    )
    merged = (
        pl.concat([run_frame.with_columns(_k=pl.lit(0)), events.with_columns(_k=pl.lit(1))])
        .join(order, on="run", how="left")
        .sort("_ord", "_k", "step", maintain_order=True, nulls_last=False)
        .select(COLUMNS)
    )
    return LoadedLog(scalars.path, merged, notes)


def _last_values(points: pl.DataFrame) -> pl.DataFrame:
    """One value per quantity and step: where a tag was written twice at a step (a run resumed
    from a checkpoint), or two tags read as one (``loss/a`` and ``train/loss/a``), the later."""
    quantity = pl.struct(_QUANTITY)
    # Hashes that collide only cost the deduplication a log without duplicates does not need.
    if points.select(quantity.hash().n_unique()).item() == points.height:
        return points
    return points.unique(_QUANTITY, keep="last", maintain_order=True)


def _tag_table(tags: list[str], mapping: Mapping) -> pl.DataFrame:
    """Each tag that some rule reads, with the first such rule (one match per distinct tag)."""
    rows = []
    for tag in tags:
        if tag is None:
            continue
        for i, r in enumerate(mapping.rules):
            m = r.pattern.fullmatch(tag)
            if m is None:
                continue
            if r.field == IGNORE:
                break
            got = m.groupdict()
            rows.append((tag, i, r.field, *[got.get(k) for k in ("task", "a", "b", "param")]))
            break
    return pl.DataFrame(rows, schema=_KEYS, orient="row")


def _winners(table: pl.DataFrame) -> pl.DataFrame:
    """Where two rules read the same quantity (``grad_norm/a`` and ``a_grad_norm``), the first."""
    key = pl.concat_str(
        [pl.col("field"), pl.col("task"), pl.col("a"), pl.col("b")],
        separator="\x00",
        ignore_nulls=True,
    )
    return table.filter(pl.col("rule") == pl.col("rule").min().over(key))


def _field(points: pl.DataFrame, field: str, keys: list[str]) -> pl.DataFrame:
    """One field's values as a column beside ``keys`` (a join beats a filtered aggregation)."""
    return points.filter(pl.col("field") == field).select(*keys, pl.col("value").alias(field))


def _events(points: pl.DataFrame, whole: bool) -> pl.DataFrame:
    at = ["run", "step"]
    base = points.group_by(at).agg(epoch=pl.col("epoch").max(), time=pl.col("time").min())
    for field in GLOBAL_FIELDS:
        base = base.join(_field(points, field, at), on=at, how="left")
    value = pl.col("value")
    per_param = (
        points.filter(pl.col("field") == PARAM_FIELD)
        .group_by(at)
        .agg(
            _mean=value.mean(),
            _max=value.max(),
            n_grads=pl.len().cast(pl.Int64),
            _n_vanishing=(value < LAYER_VANISHING).sum().cast(pl.Int64),
            _n_exploding=(value > LAYER_EXPLODING).sum().cast(pl.Int64),
        )
    )
    events = (
        base.join(per_param, on=at, how="left")
        .join(_tasks(points), on=at, how="left")
        .join(_conflicts(points), on=at, how="left")
        .with_columns(
            mean_norm=pl.coalesce("mean_norm", "_mean", *(["total_norm"] if whole else [])),
            n_vanishing=pl.coalesce("n_vanishing", "_n_vanishing"),
            n_exploding=pl.coalesce("n_exploding", "_n_exploding"),
            max_norm=pl.coalesce("max_norm", "_max", *(["total_norm"] if whole else [])),
            conflicts=pl.when(pl.col("tasks").is_not_null()).then(pl.col("conflicts")),
        )
        .filter(
            pl.any_horizontal(
                pl.col(c).is_not_null() for c in ("total_norm", "mean_norm", "max_norm", "tasks")
            )
        )
    )
    schema = storage_schema()
    return events.select(
        pl.lit(SCHEMA_VERSION, pl.Int64).alias("v"),
        pl.col("run"),
        pl.lit(KIND_EVENT).alias("kind"),
        *[
            # a count read from a tag is a float: NaN or a fraction is no count (null)
            pl.col(c).cast(schema[c], strict=False)
            if c in events.columns
            else pl.lit(None, schema[c]).alias(c)
            for c in COLUMNS
            if c not in ("v", "run", "kind")
        ],
    )


def _task_order(points: pl.DataFrame) -> pl.DataFrame:
    """Per run, the tasks that have a norm, in the order they first appear."""
    return (
        points.filter(pl.col("field") == "grad_norm")
        .select("run", "task")
        .unique(maintain_order=True)
        .with_columns(_idx=pl.int_range(pl.len()).over("run"), _n=pl.len().over("run"))
    )


def _tasks(points: pl.DataFrame) -> pl.DataFrame:
    """A balance sample at each step where every task of the run has a norm."""
    keys = ["run", "step", "task"]
    per_task = _field(points, "grad_norm", keys).filter(pl.col("grad_norm").is_not_null())
    for field in TASK_FIELDS[1:]:
        per_task = per_task.join(_field(points, field, keys), on=keys, how="left")
    per_task = per_task.join(_task_order(points), on=["run", "task"]).sort("run", "step", "_idx")
    fields = [pl.col("task").alias("name"), *[pl.col(f) for f in TASK_FIELDS]]
    return (
        per_task.group_by("run", "step")
        .agg(tasks=pl.struct(fields), _k=pl.len(), _n=pl.col("_n").first())
        .filter(pl.col("_k") == pl.col("_n"))
        .select("run", "step", "tasks")
    )


def _conflicts(points: pl.DataFrame) -> pl.DataFrame:
    pair = pl.struct(pl.col("a"), pl.col("b"), pl.col("value").alias("cosine"))
    return (
        points.filter(pl.col("field") == PAIR_FIELD)
        .group_by("run", "step", maintain_order=True)
        .agg(conflicts=pair)
    )


def _read_tags(kind: str, used: pl.DataFrame, mapping: Mapping) -> list[dict[str, str]]:
    """What the report prints of where each number came from: the source and the templates."""
    by_field: dict[str, list[str]] = {}
    for i, field in used.iter_rows():
        by_field.setdefault(field, []).append(mapping.rules[i].template)
    tags = [{"key": SOURCE_TAG, "value": kind}]
    for field, templates in by_field.items():
        value = ", ".join(templates)
        if field == PARAM_FIELD:
            value += " (per parameter: mean_norm, max_norm, n_grads, n_vanishing, n_exploding)"
        tags.append({"key": READ_TAG + field, "value": value})
    return tags


def _cadence(steps: pl.Series) -> int | None:
    """The usual gap between logged steps (the most common one; the smallest of a tie)."""
    gaps = steps.unique().sort().diff().drop_nulls()
    gaps = gaps.filter(gaps > 0)
    if gaps.len() == 0:
        return 1 if steps.len() else None
    return int(gaps.mode().min())


def _run_record(run: str, points: pl.DataFrame, events: pl.DataFrame, tags: list) -> dict:
    mine = events.filter(pl.col("run") == run)
    stats = mine.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in GLOBAL_FIELDS))
    balance = mine.filter(pl.col("tasks").is_not_null())
    order = _task_order(points.filter(pl.col("run") == run)).get_column("task").to_list()
    weights = (
        points.filter((pl.col("run") == run) & (pl.col("field") == "weight"))
        .filter(pl.col("task").is_in(order) & pl.col("value").is_not_null())
        .group_by("task", maintain_order=True)
        .agg(pl.col("value").first())
    )
    first = dict(weights.iter_rows())  # each task's first weight, listed in the tasks' order
    times = points.filter(pl.col("run") == run).get_column("time").drop_nulls()
    started = times.min() if times.len() else None
    meta = {
        "tasks": order,
        "log_every_steps": _cadence(stats.get_column("step")),
        "balance_every_steps": _cadence(balance.get_column("step")),
        "weights": [{"name": t, "weight": first[t]} for t in order if t in first] or None,
        "started_at": (
            datetime.fromtimestamp(started, timezone.utc).isoformat()
            if started is not None
            else None
        ),
        "tags": tags,
    }
    return {"v": SCHEMA_VERSION, "run": run, "kind": KIND_RUN, "time": started, "meta": meta}


def _nothing_maps(tags: list[str]) -> str:
    tags = [t for t in tags if t is not None]
    if not tags:
        return "no scalars found: nothing to read"
    shown = ", ".join(tags[:TAGS_LISTED])
    more = f" and {len(tags) - TAGS_LISTED} more" if len(tags) > TAGS_LISTED else ""
    return f"no tag maps to a gradlog field; found {len(tags)} tags: {shown}{more}; {MAP_HINT}"
