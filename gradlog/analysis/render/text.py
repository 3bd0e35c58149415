"""The documented text report (``shared/spec/gradient-monitoring-quickstart.md``).

:func:`text_blocks` yields the report as Polars frames of ``line`` and ``style`` (a Rich style,
decided here from what the line says, never read back from its text), a block of events at a
time, so a million-event report is streamed, not held. Lines are raw: the output boundary
(:mod:`gradlog.analysis.output`) neutralises log text as they leave. Wording: :mod:`gradlog.messages`.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from gradlog import classify, messages
from gradlog.analysis.foreign import read_from
from gradlog.analysis.model import Report, RunReport
from gradlog.analysis.render import columns
from gradlog.analysis.render.closing import Line, closing_lines, verdict_style
from gradlog.analysis.render.columns import template, title
from gradlog.analysis.status import EMPHASIS, Status
from gradlog.classify import Collapse
from gradlog.format import STATS_AFTER_CLIPPING
from gradlog.frames import IN_MEMORY

EVENTS_PER_BLOCK = 20_000  # events rendered (and held as text) at a time


def text_blocks(report: Report) -> Iterator[pl.DataFrame]:
    """The whole report, run by run, as frames of ``line`` and ``style``: the events of many
    small runs rendered together, a large run a block of events at a time."""
    if not report.runs:
        return
    events = report.events_in_order()
    batch: list[tuple[int, RunReport, int, int, bool, bool]] = []
    size, offset = 0, 0
    for pos, run in enumerate(report.runs):
        n = run.summary.n_events
        for start in range(0, max(n, 1), EVENTS_PER_BLOCK):
            length = min(EVENTS_PER_BLOCK, n - start)
            batch.append((pos, run, offset + start, length, start == 0, start + length >= n))
            size += length
            if size >= EVENTS_PER_BLOCK:
                yield _block(report, batch, events)
                batch, size = [], 0
        offset += n
    if batch:
        yield _block(report, batch, events)


def format_text(report: Report) -> str:
    """The report as plain text, newline-terminated, log text not yet neutralised."""
    return "".join(
        "".join(line + "\n" for line in block.get_column("line")) for block in text_blocks(report)
    )


def _block(
    report: Report, batch: list[tuple[int, RunReport, int, int, bool, bool]], events: pl.DataFrame
) -> pl.DataFrame:
    around: list[tuple[int, int, int, str, str]] = []  # pos, 0 before / 2 after, k, line, style
    for pos, run, _, _, first, last in batch:
        if first:
            head = _opening(report, run, pos)
            around += [(pos, 0, k, text, style) for k, (text, style) in enumerate(head)]
        if last:
            tail = closing_lines(run)
            around += [(pos, 2, k, text, style) for k, (text, style) in enumerate(tail)]
    frames = [
        pl.DataFrame(
            around,
            schema={
                "pos": pl.Int64,
                "part": pl.Int8,
                "k": pl.Int64,
                "line": pl.String,
                "style": pl.String,
            },
            orient="row",
        )
    ]
    start = batch[0][2]
    length = batch[-1][2] + batch[-1][3] - start
    if length > 0:  # the batch's events lie together in the sorted frame
        runs = {pos: run for pos, run, _, _, _, _ in batch}
        frames.append(_event_lines(events.slice(start, length), runs))
    return (
        pl.concat(frames, how="vertical_relaxed")
        .sort("pos", "part", "k", maintain_order=True)
        .select("line", "style")
    )


def _opening(report: Report, run: RunReport, pos: int) -> list[Line]:
    lines: list[Line] = []
    if len(report.runs) > 1:
        if pos:
            lines.append(("", ""))
        lines += [(f"=== Run {run.run_id} ({report.path}) ===", EMPHASIS), ("", "")]
    lines.append((messages.enabled_line(run.log_every, run.log_every_steps), EMPHASIS))
    source = read_from(run.tags)  # another tool's log: where each number came from
    return lines + ([(source, "")] if source else []) + [("", "")]


# -- the events, as columns ---------------------------------------------------------------------

_LINE_TEMPLATES = [
    messages.STATS_HEAD,
    messages.STATS_MEAN,
    messages.STATS_MAX,
    messages.CLIPPED,
    messages.CLIPPED_AFTER,
    messages.EXPLODING_BEFORE_CLIPPING,
    messages.VANISHING_WARNING,
    messages.EXPLODING_WARNING,
    messages.IMBALANCE_HEAD,
    messages.IMBALANCE_RATIO,
    messages.SHARE,
    *messages.LINE.values(),
]


def _event_lines(ev: pl.DataFrame, runs: dict[int, RunReport]) -> pl.DataFrame:
    """Every event's lines (``pos, part=1, k, line, style``), in file order within each run."""
    col, lit = pl.col, pl.lit
    specs = columns.fields(_LINE_TEMPLATES)
    coef = col("clip_coef") if "clip_coef" in ev.columns else lit(None, pl.Float64)
    pre_clip = col("pre_clip_norm") if "pre_clip_norm" in ev.columns else lit(None, pl.Float64)
    # messages.stats_block's clipping lines, as columns
    after = col("pos").replace_strict(
        {pos: run.stats_at == STATS_AFTER_CLIPPING for pos, run in runs.items()},
        default=False,
        return_dtype=pl.Boolean,
    )
    original = any(run.original for run in runs.values())
    # --original prints the original's lines alone (it printed none about clipping)
    logged = col("mean_norm").is_not_null() & pre_clip.is_not_null() & (not original)
    clipped = logged & (coef > 0) & (coef < 1) & pre_clip.is_finite()  # classify.clipped
    ev = ev.with_columns(
        _after=after,
        _clipped=clipped.fill_null(False),
        _lost=(logged & after & ~pre_clip.is_finite()).fill_null(False),
        _pre_mean=col("mean_norm") / coef,
    )
    ev = columns.format_numbers(
        ev,
        {
            "pre_mean": col("_pre_mean"),
            "pre_max": col("max_norm") / coef,
            "pre": pre_clip,
            "post": pre_clip * coef,
            "mean": col("mean_norm"),
            "max": col("max_norm"),
            "r": col("ratio"),
            "w": col("window_ratio"),
            "s": col("window_spread"),
            "sample_spread": col("spread"),
        },
        specs | {("w", ".2f"), ("s", ".2f"), ("sample_spread", ".2f")},
    )
    ev = ev.with_columns(
        _undefined=pl.Series(_undefined_lines(ev, runs), dtype=pl.String),
        # the original judged its pair alone, and printed no shares
        _shares=pl.lit(None, pl.String) if original else _shares_lines(ev),
    )
    label, mean, maxn = col("label"), col("mean_norm"), col("max_norm")
    when = pl.concat_str(label.str.slice(0, 1).str.to_lowercase(), label.str.slice(1))
    stats = mean.is_not_null()
    balance = col("has_balance")
    defined = col("defined")
    warn = Status.MINOR.style

    def n_layers(column: str, text: str) -> pl.Expr:
        n = col(column) if column in ev.columns else lit(None, pl.Int64)
        return pl.when(stats & (n.fill_null(0) != 0)).then(template(text, n=n.cast(pl.String)))

    def at(condition: pl.Expr, text: pl.Expr | str, style: str = "") -> tuple[pl.Expr, pl.Expr]:
        value = lit(text) if isinstance(text, str) else text
        return pl.when(condition).then(value), pl.when(condition).then(lit(style))

    def ratio_line(num: str, den: str, r: str) -> pl.Expr:
        return template(
            messages.IMBALANCE_RATIO.replace("{r:.2f}", "{" + r + ":.2f}"),
            num=title(col(num)),
            den=title(col(den)),
        )

    def verdict_line(verdict: str, num: str, den: str, r: str) -> pl.Expr:
        out = pl.lit(None, pl.String)
        for v, text in messages.LINE.items():
            line = template(
                text.replace("{r:.2f}", "{" + r + ":.2f}"), num=title(col(num)), den=title(col(den))
            )
            out = pl.when(col(verdict) == v.value).then(line).otherwise(out)
        return out

    def verdict_style_expr(verdict: str) -> pl.Expr:
        return col(verdict).replace_strict(
            {v.value: verdict_style(v) for v in Collapse}, default="", return_dtype=pl.String
        )

    paired = col("pair_a").is_not_null()
    extremes_differ = (
        paired
        & (col("n_tasks") >= 3)
        & ~(
            ((col("dominant") == col("pair_a")) & (col("starved") == col("pair_b")))
            | ((col("dominant") == col("pair_b")) & (col("starved") == col("pair_a")))
        ).fill_null(False)
    )
    window_differs = (
        paired
        & (col("n_tasks") >= 3)
        & col("window_dominant").is_not_null()
        & ~(
            ((col("window_dominant") == col("pair_a")) & (col("window_starved") == col("pair_b")))
            | ((col("window_dominant") == col("pair_b")) & (col("window_starved") == col("pair_a")))
        ).fill_null(False)
    )
    imbalance = balance & defined & col("imbalance")
    verdict_shown = balance
    if original:
        # classify.original_line_shown, as a column
        shown = col("shown_verdict")
        verdict_shown = balance & (
            shown.is_in([Collapse.NUMERATOR_DOMINATES.value, Collapse.DENOMINATOR_DOMINATES.value])
            | (
                (shown == Collapse.BALANCED.value)
                & (col("epoch") % classify.ORIGINAL_BALANCED_EVERY == 0)
            )
        ).fill_null(False)
    entries = [
        at(stats, template(messages.STATS_HEAD, label=label), EMPHASIS),
        at(stats, template(messages.STATS_MEAN)),
        at(stats, template(messages.STATS_MAX)),
        at(col("_lost"), messages.NONFINITE_BEFORE_CLIPPING, Status.NONFINITE.style),
        at(col("_clipped") & col("_after"), template(messages.CLIPPED)),
        at(col("_clipped") & ~col("_after"), template(messages.CLIPPED_AFTER)),
        at(
            # Polars orders NaN above every number; Python's comparison, as the echo's, does not
            col("_clipped")
            & col("_after")
            & (col("_pre_mean") > classify.EXPLODING_NORM)
            & ~col("_pre_mean").is_nan(),
            template(messages.EXPLODING_BEFORE_CLIPPING),
            warn,
        ),
        at(
            stats & ~(mean.is_finite() & maxn.is_finite()),
            messages.NONFINITE_WARNING,
            Status.NONFINITE.style,
        ),
        (n_layers("n_vanishing", messages.VANISHING_WARNING), pl.lit(warn)),
        (n_layers("n_exploding", messages.EXPLODING_WARNING), pl.lit(warn)),
        at(stats, ""),
        at(balance & ~defined, col("_undefined"), Status.UNDEFINED.style),
        at(balance & ~defined, ""),
        at(imbalance, template(messages.IMBALANCE_HEAD, when=when), warn),
        at(imbalance, ratio_line("num", "den", "r"), warn),
        at(imbalance & extremes_differ, ratio_line("dominant", "starved", "sample_spread"), warn),
        at(imbalance, ""),
        (
            pl.when(verdict_shown).then(
                verdict_line("shown_verdict", "window_num", "window_den", "w")
            ),
            pl.when(verdict_shown).then(verdict_style_expr("shown_verdict")),
        ),
        (
            pl.when(balance & window_differs).then(
                verdict_line("verdict", "window_dominant", "window_starved", "s")
            ),
            pl.when(balance & window_differs).then(verdict_style_expr("verdict")),
        ),
        at(balance & col("_shares").is_not_null(), col("_shares")),
        at(verdict_shown, ""),
    ]
    # each line exists only where printed (null elsewhere): one frame per kind of line, stacked
    # and put in order (a list column per event would cost ten times more)
    base = ev.lazy()
    stacked = pl.concat(
        [
            base.select(
                "pos",
                "row",
                k=pl.lit(i, pl.Int64),
                line=line.cast(pl.String),
                style=style.cast(pl.String),
            )
            for i, (line, style) in enumerate(entries)
        ]
    )
    return (
        stacked.filter(pl.col("line").is_not_null())
        .sort("pos", "row", "k")
        .select(
            "pos",
            part=pl.lit(1, pl.Int8),
            k=pl.int_range(pl.len(), dtype=pl.Int64),
            line="line",
            style=pl.col("style").fill_null(""),
        )
        .collect(engine=IN_MEMORY)
    )


def _undefined_lines(ev: pl.DataFrame, runs: dict[int, RunReport]) -> list[str | None]:
    """The rare undefined-sample lines, in Python (``{:.4g}`` formatting, any task count)."""
    out: list[str | None] = [None] * ev.height
    rows = ev.with_row_index("_i").filter(pl.col("has_balance") & ~pl.col("defined"))
    for i, pos, label, names, norms in rows.select(
        "_i", "pos", "label", "names", "norms"
    ).iter_rows():
        run = runs[pos]
        if run.original:  # the original's samples hold its pair alone
            order = list(run.pair or run.tasks)
        elif run.pair:
            order = list(run.pair) + [t for t in run.tasks if t not in run.pair]
        else:
            order = run.tasks
        found = dict(zip(names or [], norms or []))
        shown = {t: _or_nan(found[t]) if t in found else None for t in order}
        out[i] = messages.undefined_line(_when(label), shown)
    return out


def _shares_lines(ev: pl.DataFrame) -> pl.Series:
    """``Task shares: A 50.0%, ...`` for each defined sample of a run of three or more tasks."""
    wanted = ev.with_row_index("_i").filter(pl.col("defined") & (pl.col("n_tasks") >= 3))
    out = pl.Series("_shares", [None] * ev.height, dtype=pl.String)
    if wanted.height == 0:
        return out
    long = (
        wanted.select("_i", "names", "norms")
        .with_columns(total=pl.col("norms").list.sum())
        .explode("names", "norms")
        .with_columns(share=100 * pl.col("norms") / pl.col("total"))
    )
    long = columns.format_numbers(long, {"share": pl.col("share")}, {("share", ".1f")})
    joined = (
        long.with_columns(piece=template(messages.SHARE, task=title(pl.col("names"))))
        .group_by("_i", maintain_order=True)
        .agg(pl.col("piece").str.join(", "))
        .with_columns(line=template(messages.SHARES, shares=pl.col("piece")))
    )
    return out.scatter(joined.get_column("_i"), joined.get_column("line"))


def _when(label: str) -> str:
    return label[:1].lower() + label[1:]


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
