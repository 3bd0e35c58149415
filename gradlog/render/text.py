"""The documented text report (``shared/spec/gradient-monitoring-quickstart.md``).

:func:`report_lines` renders plain lines, and :func:`format_text` the string the golden tests
pin; :func:`text_chunks` yields the same text piece by piece, for the CLI to stream. Colour is
decided afterwards, line by line, by :func:`line_style`, so that building a million-event report
costs no more than its text.

The per-event lines of a run analysed into :class:`~gradlog.analysis.ColumnarEvents` are built
by Polars string expressions, a block of events at a time, byte for byte what :func:`run_lines`
builds in Python (a test checks both on random logs); numbers are formatted as Python's
``f"{x:.4f}"`` does, falling back to Python for the rare value too close to a rounding tie to
decide in floating point. Text that comes from the log (run ids, task names, the file name) is
passed through :func:`gradlog.sanitize.for_terminal`: it is shown, never obeyed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from gradlog import classify, messages
from gradlog.classify import Collapse, NormBand, RatioBand
from gradlog.sanitize import for_terminal
from gradlog.summary import Report, RunReport

RULE = "-" * 60
EVENTS_PER_CHUNK = 100_000  # events rendered (and held as text) at a time


def report_lines(report: Report) -> list[str]:
    """Every run of the report; a heading names each run when the file holds several."""
    return format_text(report).split("\n")[:-1]


def text_chunks(report: Report) -> Iterator[str]:
    """The report's text in pieces that join to :func:`format_text`, for streaming output."""
    for i, run in enumerate(report.runs):
        if len(report.runs) > 1:
            yield ("\n" if i else "") + _heading(run.run_id, report.path) + "\n\n"
        if _columnar(run):
            yield from _run_chunks(run)
        else:
            yield "".join(line + "\n" for line in run_lines(run))


def _heading(run_id: str, path: str) -> str:
    return f"=== Run {for_terminal(run_id)} ({for_terminal(path)}) ==="


def _safe_pair(run: RunReport) -> tuple[str, str]:
    num, den = run.pair or ("", "")
    return for_terminal(num), for_terminal(den)


def run_lines(run: RunReport) -> list[str]:
    """One run's report, line by line in Python (the reference the columnar path matches)."""
    lines = [messages.enabled_line(run.log_every, run.log_every_steps), ""]
    num, den = _safe_pair(run)
    safe_tasks = {t: for_terminal(t) for t in run.tasks}
    ev = run.events
    append, extend = lines.append, lines.extend
    stats_block, collapse_line = messages.stats_block, messages.collapse_line
    for i in range(len(ev)):
        mean = ev.mean_norm[i]
        if mean is not None:
            extend(
                stats_block(ev.label[i], mean, ev.max_norm[i], ev.n_vanishing[i], ev.n_exploding[i])
            )
            append("")
        if not ev.has_balance[i]:
            continue
        r = ev.ratio[i]
        if r is None:
            raw_num, raw_den = run.pair
            a, b = _or_nan(ev.norms[raw_num][i]), _or_nan(ev.norms[raw_den][i])
            extend((messages.undefined_ratio_line(_when(ev.label[i]), num, den, a, b), ""))
        elif ev.imbalance[i]:
            extend(messages.imbalance_lines(_when(ev.label[i]), num, den, r))
            append("")
        append(collapse_line(ev.verdict[i], num, den, ev.window_mean[i]))
        if ev.shares is not None and ev.shares[run.tasks[0]][i] is not None:
            append(messages.shares_line({safe_tasks[t]: ev.shares[t][i] for t in run.tasks}))
        append("")
    extend(_closing_lines(run))
    return lines


def _closing_lines(run: RunReport) -> list[str]:
    """The summary and the "Recommended action" section, log-derived text neutralised."""
    return [for_terminal(line) for line in (*summary_lines(run), "", *recommendation_lines(run))]


def _when(label: str) -> str:
    return label[:1].lower() + label[1:]


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def summary_lines(run: RunReport) -> list[str]:
    s = run.summary
    num, den = run.pair or ("", "")
    lines = messages.summary_lines(
        s.mean_norm_mean,
        s.mean_norm_std,
        s.max_norm_mean,
        s.max_norm_peak,
        s.final_verdict,
        num,
        den,
        s.final_ratio,
    )
    if s.n_nonfinite:
        lines.append(messages.nonfinite_summary_line(s.n_nonfinite, s.n_stats))
    if s.final_shares:
        lines.append("  " + messages.shares_line(s.final_shares))
    return lines


def recommendation_lines(run: RunReport) -> list[str]:
    """The "Recommended action" section: bands, the quick start's actions, balancing weights."""
    r, s = run.recommendation, run.summary
    lines = [RULE, "Recommended action:"]
    if r.ratio_band is None:
        reason = "fewer than two tasks" if run.pair is None else "not enough balance samples"
        lines.append(f"  Task balance:   no verdict ({reason})")
    else:
        detail = f"window ratio {messages.fmt2(s.final_ratio)}"
        if r.dominant and r.ratio_band is not RatioBand.HEALTHY:
            detail += f", {messages.title(r.dominant)} dominating"
        lines.append(f"  Task balance:   {r.ratio_band.label} ({detail}): {r.ratio_band.action}")
    balance = s.task_balance
    if balance is not None:  # three or more tasks
        lines.append(
            messages.tasks_line(
                balance.dominant,
                balance.shares[balance.dominant],
                balance.starved,
                balance.shares[balance.starved],
                balance.spread,
            )
        )
    if r.norm_band is None:
        lines.append("  Gradient norms: no verdict (no gradient statistics logged)")
    else:
        if r.norm_band is NormBand.NONFINITE:
            mean = f"in {s.n_nonfinite} of {s.n_stats} logged events"
        else:
            mean = f"mean {messages.fmt4(s.mean_norm_mean)}"
        lines.append(f"  Gradient norms: {r.norm_band.label} ({mean}): {r.norm_band.action}")
    worst = s.worst_norm_band
    if worst is not None and worst.warns and worst is not r.norm_band:
        lines.append(f"  Worst logged norm band: {worst.label}: {worst.action}")
    for pair in s.conflicts:
        if pair.sustained:
            lines.append(
                messages.conflict_line(
                    pair.a, pair.b, pair.mean_cosine, pair.n_samples, classify.CONFLICT_ACTION
                )
            )
    if r.withheld is not None:
        lines.append(f"  No weights suggested: {r.withheld}")
    if r.weights is not None:
        last = min(run.window, s.n_balance - s.n_undefined)
        lines.append(f"  Weights that would have balanced the last {last} balance samples:")
        lines.append(f"    {r.flags}")
        if r.weights_assumed:
            lines.append(
                "    (the log carries no loss weights; current weights of 1.0 were assumed)"
            )
    return lines


_RED = "bold red"
_STYLES = (  # first matching prefix wins
    ("[PHASE 4] TASK COLLAPSE", _RED),
    ("  TASK COLLAPSE DETECTED", _RED),
    ("[PHASE 4] Task balance undefined", _RED),
    ("  WARNING: Non-finite", _RED),
    ("  WARNING", "yellow"),
    ("[PHASE 4] Task imbalance", "yellow"),
    ("[PHASE 4] Task balance: Tasks balanced", "green"),
    ("  Task balance: Tasks balanced", "green"),
    (f"  Task balance:   {RatioBand.HEALTHY.label}", "green"),
    (f"  Task balance:   {RatioBand.COLLAPSE.label}", _RED),
    (f"  Task balance:   {RatioBand.UNDEFINED.label}", _RED),
    ("  Task balance:   no verdict", ""),
    ("  Task balance:   ", "yellow"),
    (f"  Gradient norms: {NormBand.HEALTHY.label}", "green"),
    (f"  Gradient norms: {NormBand.EXPLODING.label}", _RED),
    (f"  Gradient norms: {NormBand.NONFINITE.label}", _RED),
    (f"  Gradient norms: {NormBand.VANISHING.label}", "yellow"),
    (f"  Gradient norms: {NormBand.LARGE.label}", "yellow"),
    ("  Worst logged norm band", "yellow"),
    ("  Gradient conflict", "yellow"),
    ("    --loss", "bold"),
    ("[PHASE 4] Gradient", "bold"),
    ("Recommended action:", "bold"),
    ("=== Run", "bold"),
)


def line_style(line: str) -> str:
    """The Rich style of one report line on a terminal ("" for none)."""
    for prefix, style in _STYLES:
        if line.startswith(prefix):
            return style
    if line.endswith("Gradient Stats:"):
        return "bold"
    if "(healthy range:" in line:
        return "yellow"
    return ""


def format_text(report: Report) -> str:
    """The report as plain text, newline-terminated."""
    return "".join(text_chunks(report))


# -- the columnar path: a block of events at a time, as Polars string expressions ---------------


def _columnar(run: RunReport) -> bool:
    return getattr(run.events, "frame", None) is not None


def _run_chunks(run: RunReport) -> Iterator[str]:
    import polars as pl  # the columnar events come from the analysis, which runs on Polars

    yield messages.enabled_line(run.log_every, run.log_every_steps) + "\n\n"
    frame: pl.DataFrame = run.events.frame
    parts = [frame.slice(o, EVENTS_PER_CHUNK) for o in range(0, frame.height, EVENTS_PER_CHUNK)]
    if len(parts) == 1:
        yield _events_text(parts[0], run)
    elif parts:
        # Two blocks at a time (Polars releases the GIL), in order, a few blocks of text held
        with ThreadPoolExecutor(2) as pool:
            pending: deque = deque()
            for part in parts:
                pending.append(pool.submit(_events_text, part, run))
                if len(pending) > 2:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    yield "".join(line + "\n" for line in _closing_lines(run))


def _events_text(part, run: RunReport) -> str:
    """The lines of a block of events, exactly as :func:`run_lines` writes them."""
    import polars as pl

    num, den = _safe_pair(run)
    title_num, title_den = messages.title(num), messages.title(den)
    prefix = messages.PREFIX
    col, lit = pl.col, pl.lit
    shares = run.events.shares is not None and run.pair is not None
    numbers = {
        "_mean": (col("mean_norm"), 4),
        "_max": (col("max_norm"), 4),
        "_r": (col("ratio"), 2),
        "_w": (col("window_mean"), 2),
    }
    if shares:
        for t in run.tasks:
            numbers[f"_share:{t}"] = (col(f"share:{t}") * 100, 1)
    exprs = {}
    for name, (value, decimals) in numbers.items():
        text, needs_python = _fixed(value, decimals)
        exprs[name] = text
        exprs[f"{name}?"] = needs_python
        exprs[f"{name}="] = value
    done = part.select(**exprs)  # one pass, the columns in parallel
    f = part.with_columns(
        _patch(done[name], done[f"{name}?"], done[f"{name}="], decimals).alias(name)
        for name, (_, decimals) in numbers.items()
    ).with_columns(pl.Series("_undefined", _undefined_lines(part, run), dtype=pl.String))

    # Each block is built only where it is printed: a part left null makes the whole concat
    # null (then ""), so no row builds text that is thrown away.
    label, mean, maxn = col("label"), col("mean_norm"), col("max_norm")
    when = pl.concat_str(label.str.slice(0, 1).str.to_lowercase(), label.str.slice(1))

    def optional(condition: pl.Expr, text: str) -> pl.Expr:
        return pl.when(condition).then(lit(text)).otherwise(lit(""))

    def warn(count: str, what: str) -> pl.Expr:
        n = col(count)
        return pl.concat_str(
            lit(f"  WARNING: {what} gradients in "),
            pl.when(n != 0).then(n).cast(pl.String),
            lit(" layers\n"),
        ).fill_null("")

    stats = pl.concat_str(
        label,
        lit(" Gradient Stats:\n  Mean norm: "),
        col("_mean"),  # null for an event without statistics: no block
        lit("\n  Max norm:  "),
        col("_max"),
        lit("\n"),
        optional(~(mean.is_finite() & maxn.is_finite()), "  WARNING: Non-finite gradient norms\n"),
        warn("n_vanishing", "Vanishing"),
        warn("n_exploding", "Exploding"),
        lit("\n"),
    )
    ratio = col("ratio")
    imbalance = pl.concat_str(
        lit(f"{prefix} Task imbalance detected at "),
        when,
        lit(f"!\n{title_num}/{title_den} gradient ratio: "),
        pl.when(ratio.is_not_null() & col("imbalance")).then(col("_r")),
        lit(" (healthy range: 0.5-2.0)\n\n"),
    ).fill_null("")
    verdict = col("verdict")
    high = f"{classify.COLLAPSE_RATIO:.1f}"
    low = f"{1 / classify.COLLAPSE_RATIO:.2f}"
    heads = {
        Collapse.NUMERATOR_DOMINATES.value: f"{prefix} TASK COLLAPSE: {title_num} task dominating (ratio=",
        Collapse.DENOMINATOR_DOMINATES.value: f"{prefix} TASK COLLAPSE: {title_den} task dominating (ratio=",
        Collapse.BALANCED.value: f"{prefix} Task balance: Tasks balanced (ratio=",
        Collapse.NOT_ENOUGH_DATA.value: f"{prefix} Task balance: Not enough data",
    }
    tails = {
        Collapse.NUMERATOR_DOMINATES.value: f" > {high})\n",
        Collapse.DENOMINATOR_DOMINATES.value: f" < {low})\n",
        Collapse.BALANCED.value: ")\n",
        Collapse.NOT_ENOUGH_DATA.value: "\n",
    }
    collapse = pl.concat_str(  # null where there is no balance sample (no verdict)
        verdict.replace_strict(heads, default=None, return_dtype=pl.String),
        pl.when(verdict != Collapse.NOT_ENOUGH_DATA.value).then(col("_w")).fill_null(""),
        verdict.replace_strict(tails, default=None, return_dtype=pl.String),
    )
    share_line = lit("")
    if shares:
        pieces: list[pl.Expr] = [lit("Task shares: ")]
        for k, t in enumerate(run.tasks):
            sep = ", " if k else ""
            pieces += [
                lit(f"{sep}{messages.title(for_terminal(t))} "),
                col(f"_share:{t}"),
                lit("%"),
            ]
        pieces.append(lit("\n"))
        share_line = pl.concat_str(pieces).fill_null("")  # null shares: no line
    balance = pl.concat_str(
        col("_undefined").fill_null(""), imbalance, collapse, share_line, lit("\n")
    )
    blocks = f.select(  # two columns, built in parallel
        stats.fill_null("").alias("stats"),
        balance.fill_null("").alias("balance"),
    )
    return blocks.select(pl.concat_str("stats", "balance").str.join("")).item()


def _undefined_lines(part, run: RunReport) -> list[str | None]:
    """The rare undefined-ratio lines, in Python (``{:.4g}`` formatting, two norms)."""
    import polars as pl

    out: list[str | None] = [None] * part.height
    if run.pair is None:
        return out
    raw_num, raw_den = run.pair
    num, den = _safe_pair(run)
    rows = part.with_row_index("_i").filter(pl.col("has_balance") & pl.col("ratio").is_null())
    norms = run.events.norm_cols
    for i, label, a, b in rows.select(
        "_i", "label", pl.col(norms[raw_num]), pl.col(norms[raw_den])
    ).iter_rows():
        line = messages.undefined_ratio_line(_when(label), num, den, _or_nan(a), _or_nan(b))
        out[i] = line + "\n\n"
    return out


def _fixed(x, decimals: int):
    """``f"{x:.{decimals}f}"`` of a float expression, and where Python must format it instead.

    Returns (text, needs_python). The value is scaled and rounded in floating point where that
    is certainly what Python's correctly rounded decimal conversion gives: the scaled value is
    far enough from a rounding tie that the error of one multiplication cannot cross it. The
    rest (near-ties, huge values, NaN and infinities: a tiny share of any real log) is marked
    for :func:`_patch`, which formats it with Python itself.
    """
    import polars as pl

    scale = 10**decimals
    y = x.abs() * scale
    frac = y - y.floor()
    negative = (x < 0) | ((x == 0) & ((1.0 / x) < 0))  # -0.0 prints as "-0.0000"
    safe = (x.is_finite() & (x.abs() < 1e9) & ((frac - 0.5).abs() > y * 4e-16 + 1e-9)).fill_null(
        False
    )
    n = (y + 0.5).floor().cast(pl.Int64)
    text = pl.concat_str(
        pl.when(negative).then(pl.lit("-")).otherwise(pl.lit("")),
        (n // scale).cast(pl.String),
        pl.lit("."),
        (n % scale).cast(pl.String).str.zfill(decimals),
    )
    return pl.when(safe).then(text), ~safe & x.is_not_null()


def _patch(text, needs_python, values, decimals: int):
    """``text`` with the values :func:`_fixed` left to Python formatted by Python."""
    if not needs_python.any():
        return text
    rows = needs_python.arg_true()
    python = [f"{v:.{decimals}f}" for v in values.gather(rows).to_list()]
    return text.scatter(rows, python)
