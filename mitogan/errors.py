"""Exceptions whose message is meant for a person: one line naming the file/field and what to do.

The CLI prints ``mitogan: error: <message>`` for these and exits with status 2, never a traceback.
"""

__all__ = ["MitoganError", "InputError", "ConfigError", "one_line"]


class MitoganError(Exception):
    """Base class: the message alone tells the user what went wrong and what to do.

    The message is always one line: line breaks that reach it from user input (a key or file name with a
    newline in it) are shown escaped, as ``\\n``.
    """

    def __str__(self) -> str:
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class InputError(MitoganError):
    """A data file or folder cannot be used (empty, corrupt, wrong shape or dtype, no frames)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(MitoganError):
    """A configuration key is unknown or a value is out of range; the message names the dotted key."""


def one_line(message: str, limit: int | None = None) -> str:
    """A message as one line (library errors such as unpickling ones span several), at most ``limit`` chars."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
