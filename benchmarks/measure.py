"""Wall time and peak memory of one command, run in a fresh process.

The peak is the command's own resident set. ``os.wait4`` on a child of the benchmark itself
would not give it: Linux carries a process's peak across ``exec`` (Python starts children with
``vfork``, so the child's peak at ``exec`` is this process's), and a benchmark that has just
generated gigabytes of logs would see its own size reported as the command's. So the command is
started by a small launcher, a fresh interpreter of about 10 MiB, and the launcher's ``wait4``
is the one read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs the command, then writes its ru_maxrss (KiB) to the file named first.
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status) % 256)\n"
)


def run_measured(
    args: list[str], stdout: Path | int | None = None
) -> tuple[float, float, int, bytes, bytes]:
    """Run ``args``: its wall seconds, peak resident MiB, exit code, standard output (unless
    ``stdout`` is a file to write it to, or ``subprocess.DEVNULL``) and standard error."""
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as peak_file:
        sink = open(stdout, "wb") if isinstance(stdout, Path) else stdout  # noqa: SIM115
        try:
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _LAUNCHER, peak_file.name, *args],
                stdout=subprocess.PIPE if sink is None else sink,
                stderr=subprocess.PIPE,
            )
            wall = time.perf_counter() - start
        finally:
            if isinstance(stdout, Path):
                sink.close()
        peak_kib = int(Path(peak_file.name).read_text() or 0)
    return wall, peak_kib / 1024, proc.returncode, proc.stdout or b"", proc.stderr


def measure(
    args: list[str],
    stdout: Path | int | None = None,
    ok: tuple[int, ...] = (0,),
) -> tuple[float, float, str]:
    """Run ``args``; its wall seconds, peak resident MiB, and standard output.

    ``stdout``: a file to write the output to (the returned output is then empty), or
    ``subprocess.DEVNULL``; by default it is captured. An exit code outside ``ok`` raises.
    """
    wall, peak, code, out, err = run_measured(args, stdout)
    if code not in ok:
        raise RuntimeError(
            f"{' '.join(map(str, args[:5]))} exited {code}: {err.decode(errors='replace')[-2000:]}"
        )
    return wall, peak, out.decode()


if __name__ == "__main__":  # a check of the method: a large parent does not inflate the child
    ballast = bytearray(512 * 2**20)
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    _, peak, _ = measure([sys.executable, "-c", "pass"], stdout=subprocess.DEVNULL)
    usage = os.wait4(subprocess.Popen([sys.executable, "-c", "pass"]).pid, 0)[2]
    print(
        f"python -c pass: {peak:.0f} MiB measured; a direct wait4 says {usage.ru_maxrss / 1024:.0f} MiB"
    )
