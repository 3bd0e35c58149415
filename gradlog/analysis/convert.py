"""Writing a loaded log in another format (``gradlog convert``)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from gradlog.analysis.readers import LoadedLog
from gradlog.errors import GradlogError
from gradlog.files import check_output, replacing, write_parquet
from gradlog.format import dumps


def convert_log(log: LoadedLog, output: str | os.PathLike[str], *, overwrite: bool = False) -> int:
    """Write ``log`` to ``output`` (.parquet, .jsonl, .jsonl.gz); returns the records written."""
    out = Path(output)
    name = out.name.lower()
    check_output(out, force=overwrite)
    if name.endswith(".parquet"):
        write_parquet(log.frame, out)
    elif name.endswith((".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz")):
        # never a half-written output under the real name: a temporary file, renamed at the end
        with replacing(out) as raw:
            fh = gzip.GzipFile(fileobj=raw, mode="wb") if name.endswith(".gz") else raw
            for row in log.frame.iter_rows(named=True):
                fh.write(dumps(_compact(row)))
            if fh is not raw:
                fh.close()  # the gzip trailer; the raw file is the block's to close
    else:
        raise GradlogError(
            f"{out}: unknown format; use a name ending in .parquet, .jsonl or .jsonl.gz"
        )
    return log.frame.height


def _compact(row: dict) -> dict:
    """Drop null fields, as the recorder writes them, so converted logs stay small."""
    return {k: v for k, v in row.items() if v is not None}
