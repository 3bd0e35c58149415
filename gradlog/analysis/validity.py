"""The one list of rules a record must keep to be read (docs/format.md), as Polars expressions.

Every reader applies the same list: the careful reader of ``gradlog report`` names the first
record that breaks a rule (file, line, field and what is wrong); the fast scans of ``gradlog
batch`` mark such records, and send their file to the careful reader for that message. So a log
is accepted or refused the same way by every command.
"""

from __future__ import annotations

import polars as pl

from gradlog.format import KIND_EVENT, KIND_RUN, MAX_TASKS, REQUIRED_FIELDS, SCHEMA_VERSION

Rule = tuple[pl.Expr, str | None, str]  # (the record breaks it, field, what is wrong)


def record_rules() -> list[Rule]:
    """The rules on the columns of the storage schema (numbers already numbers).

    Each rule is true or false, never null: a field that is absent breaks only the rule that
    requires it (a run record has no ``tasks``, and breaks no rule on tasks).
    """
    rules: list[Rule] = [
        (pl.col(c).is_null(), c, "missing (required in every record)") for c in REQUIRED_FIELDS
    ]
    rules.append(
        (
            pl.col("v") != SCHEMA_VERSION,
            "v",
            f"unknown schema version (this gradlog reads version {SCHEMA_VERSION})",
        )
    )
    rules.append(
        (~pl.col("kind").is_in([KIND_RUN, KIND_EVENT]), "kind", "expected 'run' or 'event'")
    )
    tasks = pl.col("tasks")
    rules += [
        (tasks.list.len() > MAX_TASKS, "tasks", f"more than {MAX_TASKS:,} tasks in one record"),
        (
            tasks.list.eval(
                pl.element().is_null() | pl.element().struct.field("name").is_null()
            ).list.any(),
            "tasks",
            "a task without a name",
        ),
        (
            tasks.list.eval(pl.element().struct.field("name")).list.n_unique() != tasks.list.len(),
            "tasks",
            "a task appears twice in one balance sample",
        ),
    ]
    return [(rule.fill_null(False), field, message) for rule, field, message in rules]


def breaks_a_rule() -> pl.Expr:
    """Whether a record breaks any of :func:`record_rules`."""
    return pl.any_horizontal(rule for rule, _, _ in record_rules())
