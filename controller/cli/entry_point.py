"""The ``sluice`` console script's entry point, and the only place errors become exit codes.

Every failure Sluice anticipates is a :class:`~controller.errors.SluiceError`; :func:`main` prints
it as one line on stderr (secrets redacted) and exits with its code. ``--verbose`` adds the
traceback for the cases where one line is not enough.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import typer

from controller import __version__
from controller.cli.app import app
from controller.cli.options import RootOptions, plain_flags
from controller.errors import ExitCode, SluiceError
from controller.redact import redact

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; :class:`SluiceError` becomes one line on stderr."""
    command = typer.main.get_command(app)
    plain_flags(command)  # `--dry-run`, not `--dry-run <bool>`
    # The root callback fills it in; read here after the command, so `--verbose` and
    # `--config` shape the error report too.
    options = RootOptions()
    try:
        # Standalone mode keeps click's own handling of usage errors (exit 2, usage shown).
        command.main(args=argv, prog_name="sluice", standalone_mode=True, obj=options)
    except SluiceError as exc:
        if options.verbose:
            traceback.print_exc()
        sys.stderr.write(f"sluice: error: {redact(exc.message)}\n")
        return int(exc.exit_code)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return int(ExitCode.OK)
        return code if isinstance(code, int) else int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        sys.stderr.write("sluice: interrupted\n")
        return 130
    except Exception as exc:  # the one place a bug becomes an exit code
        return _crash(exc, options)
    return int(ExitCode.OK)


def _crash_dir(options: RootOptions) -> Path:
    """The state directory if the settings load, else the system's temporary directory."""
    try:
        return options.settings().state_dir
    except Exception:  # the crash log must be written somewhere
        return Path(tempfile.gettempdir())


def _crash(exc: BaseException, options: RootOptions) -> int:
    """An unanticipated exception: the traceback goes to a crash log (and with ``--verbose``
    to stderr), one line names the exception and the log; exit 70, never 1 ("gate failed")."""
    text = "".join(traceback.format_exception(exc))
    if options.verbose:
        sys.stderr.write(redact(text))
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    where = "not written"
    for directory in (_crash_dir(options), Path(tempfile.gettempdir())):
        path = directory / f"crash-{stamp}-{os.getpid()}.log"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(f"sluice {__version__} {sys.argv!r}\n{redact(text)}", encoding="utf-8")
        except OSError:
            continue
        where = str(path)
        break
    what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    sys.stderr.write(
        f"sluice: internal error: {redact(what)} (a bug; traceback in {where}, "
        "--verbose shows it)\n"
    )
    return int(ExitCode.INTERNAL_ERROR)
