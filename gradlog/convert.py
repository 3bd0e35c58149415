"""Writing a loaded log in another format (``gradlog convert``)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from gradlog.errors import GradlogError
from gradlog.readers import LoadedLog
from gradlog.writers import dumps


def convert_log(log: LoadedLog, output: str | os.PathLike[str], *, overwrite: bool = False) -> int:
    """Write ``log`` to ``output`` (.parquet, .jsonl, .jsonl.gz); returns the records written."""
    out = Path(output)
    name = out.name.lower()
    if out.is_dir():
        raise GradlogError(f"{out}: is a directory, expected an output file")
    if out.exists() and not overwrite:
        raise GradlogError(f"{out}: exists (use --force to overwrite)")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if name.endswith(".parquet"):
        log.frame.write_parquet(tmp)
    elif name.endswith((".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(tmp, "wb") as fh:
            for row in log.frame.iter_rows(named=True):
                fh.write(dumps(_compact(row)))
    else:
        raise GradlogError(
            f"{out}: unknown format; use a name ending in .parquet, .jsonl or .jsonl.gz"
        )
    os.replace(tmp, out)  # never leave a half-written output under the real name
    return log.frame.height


def _compact(row: dict) -> dict:
    """Drop null fields, as the recorder writes them, so converted logs stay small."""
    return {k: v for k, v in row.items() if v is not None}
