"""Expected errors: the user's input is wrong, not the code.

Every library error a user can cause and fix (a bad argument, an unreadable image, a malformed
table, a wrong config, missing weights) derives from ``InputError``; its ``str()`` is one or two
lines naming the file or argument and what was expected. The CLI (``instructx2x.cli``) prints it
as ``error: ...`` on stderr and exits with status 2; a traceback is shown only with ``--debug``.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """An expected, user-fixable error; the message says what, where and what was expected."""


class MissingInput(InputError, FileNotFoundError):
    """A file or folder the user named (argument, config key or dataset layout) does not exist.

    Also a ``FileNotFoundError``, so callers that test for a missing file keep working.
    """


def one_line(exc: BaseException) -> str:
    """The message of an expected error, whitespace-normalised per line (no empty lines)."""
    text = str(exc).strip() or type(exc).__name__
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def report_stage_errors() -> None:
    """In a workflow script: make an expected error visible on the terminal, not only in the log.

    A Snakemake job whose script redirects ``sys.stderr`` to its log shows only ``message: None``
    on the terminal when it fails. With this hook installed, an ``InputError`` is printed as
    ``error: ...`` both on the terminal (the process's original stderr) and in the log, and the job
    exits with status 1 (no traceback: the message says what, where and what was expected). Any
    other exception keeps its traceback in the log, and the terminal gets one line pointing at it.
    """
    import sys

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, InputError):
            line = f"error: {one_line(exc)}"
            for stream in {id(s): s for s in (sys.stderr, sys.__stderr__) if s is not None}.values():
                try:
                    print(line, file=stream, flush=True)
                except (OSError, ValueError):
                    pass
            return
        sys.__excepthook__(exc_type, exc, tb)
        if sys.stderr is not sys.__stderr__ and sys.__stderr__ is not None:
            where = getattr(sys.stderr, "name", "the job's log")
            print(f"error: {exc_type.__name__}: {one_line(exc).splitlines()[0]} (traceback in {where})",
                  file=sys.__stderr__, flush=True)

    sys.excepthook = hook
