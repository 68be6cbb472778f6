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
