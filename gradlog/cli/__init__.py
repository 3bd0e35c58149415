"""The ``gradlog`` command line: options, one library call, one output, one error handler.

Exit codes: 0 done; 1 a finding reached ``--fail-on``; 2 bad input or usage; 130 interrupted;
141 standard output closed early (``gradlog report log | head``). The analysis modules (and
Polars) are imported inside the commands, so ``gradlog --help`` stays fast; torch never is.
Each command is a module of this package; importing it registers the command on ``app``, in
the order ``--help`` lists them.
"""

from __future__ import annotations

import copy
import gc
import os
import sys

import typer

from gradlog.cli.app import app
from gradlog.errors import ClosedOutput, GradlogError
from gradlog.format import MAX_EVENTS_FLAG, MAX_STREAM_BYTES_FLAG

# isort: off
# Each import registers a command, in the order --help lists them: the main job first.
import gradlog.cli.report
import gradlog.cli.watch
import gradlog.cli.convert
import gradlog.cli.batch
import gradlog.cli.compare
import gradlog.cli.plot
import gradlog.cli.comment  # noqa: F401
# isort: on

__all__ = ["app", "main", "run"]

CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left


def _click_exception() -> type[Exception]:
    # Typer vendors Click; its exception base is reachable through Typer's public BadParameter.
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def run() -> None:
    """The ``gradlog`` program (its console script, ``python -m gradlog``): :func:`main`, then
    the process ends."""
    # Cycles are looked for every 100,000 new objects, not every 700: Polars and Typer make
    # many short-lived objects, and the frequent sweeps cost a short report 5% of its time
    # (benchmarks/startup.py); the garbage still goes, in fewer, larger sweeps.
    gc.set_threshold(100_000, *gc.get_threshold()[1:])
    try:
        main()
    finally:
        # At exit Python sweeps every object still alive for reference cycles, Polars' and
        # Typer's included: 30 ms of a short report (benchmarks/startup.py), to free memory
        # that the ending process gives back anyway. Frozen objects are left out of the sweep.
        # Files are closed and flushed before this, and atexit handlers still run.
        gc.freeze()


def main() -> None:
    """Every error becomes one line on stderr and exit code 2, never a traceback."""
    try:
        code = _invoked(sys.argv[1:])(standalone_mode=False)
        sys.stdout.flush()
    except GradlogError as exc:
        _fail(str(exc))
    except _click_exception() as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(2)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(f"{exc.format_message()}{hint}")
    except typer.Abort:
        _fail("aborted", code=130)
    except KeyboardInterrupt:
        sys.exit(130)
    except (ClosedOutput, BrokenPipeError):
        _closed_pipe()
    except BaseException as exc:  # noqa: BLE001 - promise: one line, never a traceback
        # (a Polars panic is a BaseException; importing Polars to name it would slow --help)
        if isinstance(exc, SystemExit) or os.environ.get("GRADLOG_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set GRADLOG_DEBUG=1 for details)")
    sys.exit(code if isinstance(code, int) else 0)


def _invoked(args: list[str]) -> typer.Typer:
    """The app with only the command that ``args`` name, or the whole app when they name none.

    Typer builds the parameters of every registered command before it parses a word (a third
    of ``gradlog report``'s work after its imports, on a short log), and a run needs one. With
    no command named (``gradlog --help``, a typo) every command stays: help lists them all, and
    a typo gets its suggestion.
    """
    names = {_command_name(c) for c in app.registered_commands}
    takes_value = False
    for arg in args:
        if takes_value:  # the value of a global option, whatever it spells
            takes_value = False
        elif arg in (MAX_EVENTS_FLAG, MAX_STREAM_BYTES_FLAG):
            takes_value = True
        elif arg == "--" or not arg.startswith("-"):
            if arg not in names:
                break
            one = copy.copy(app)
            one.registered_commands = [
                c for c in app.registered_commands if _command_name(c) == arg
            ]
            return one
    return app


def _command_name(command) -> str:
    return command.name or typer.main.get_command_name(command.callback.__name__)


def _closed_pipe() -> None:
    """The reader of a pipe (head, less) went away: stop quietly, with a code that cannot be
    mistaken for a finding (1) or bad input (2)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
    sys.exit(CLOSED_PIPE)


def _fail(message: str, code: int = 2) -> None:
    from gradlog.analysis import output

    output.fail(message)
    sys.exit(code)
