"""Every user-facing error of volreplay, under one base class.

:class:`VolreplayError` is what the CLI catches: it prints one ``volreplay: error:`` line and
exits with :data:`EXIT_USER_ERROR`. Two errors the libraries raise before our checks can name
them count as the user's too (:func:`is_user_error`): a path the operating system refuses
(missing, not writable, of the wrong kind), and a file DuckDB cannot read. Anything else that
escapes is a bug and shows its traceback (exit code 1). Each subclass also derives from the
built-in type it replaces, so that ``except ValueError`` around a config check keeps working.
"""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2  # every user mistake; 1 is left to bugs (a traceback)


class VolreplayError(Exception):
    """A mistake in the user's input (paths, formats, configs, data selections), shown as one
    line without a traceback."""


class UserError(VolreplayError):
    """A user mistake that fits none of the more specific classes below."""


class ConfigError(VolreplayError, ValueError):
    """A configuration mistake; the message names the key and the allowed values."""


class RefusedAtStart(ConfigError):
    """A config the data refuses at the replay's start, before its first event (no such
    hedge instrument, no listed expiry): nothing was replayed, so the run leaves nothing."""


class StoreError(VolreplayError, RuntimeError):
    """A store problem: a bad path, a locked file, the wrong mode."""


class IngestError(VolreplayError, RuntimeError):
    """An ingestion problem: a missing file, an unknown format, an unreadable container."""


class BuildError(VolreplayError, RuntimeError):
    """A surface stream build that could not finish: one of its processes failed (killed, out
    of memory); the message ends with that process's log."""


class ObjectiveValueError(VolreplayError, ValueError):
    """The sweep objective cannot be computed for one run (a null metric, log of a negative)."""


# What the CLI and the Hydra app report as one line: our errors, and a user path the operating
# system refuses (missing, not writable, a file where a folder belongs or the reverse; raised by
# the standard library before any of our checks can name it).
USER_ERRORS: tuple[type[BaseException], ...] = (
    VolreplayError, FileNotFoundError, PermissionError, FileExistsError, NotADirectoryError,
    IsADirectoryError)


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` is reported as one line: one of :data:`USER_ERRORS`, or DuckDB unable to
    read a file (``duckdb.IOException``: a damaged, truncated or locked database the user
    named).  DuckDB is not imported for this: if it is not loaded, ``e`` is not its error."""
    duckdb = sys.modules.get("duckdb")
    return isinstance(e, USER_ERRORS) or (duckdb is not None and isinstance(e, duckdb.IOException))


def error_line(e: BaseException) -> str:
    """The ``volreplay: error:`` line of a user error: its message on one line (some, like
    DuckDB's lock errors, span several)."""
    return "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip()) or type(e).__name__
