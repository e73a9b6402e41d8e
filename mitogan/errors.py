"""Exceptions whose message is meant for a person: one line naming the file/field and what to do.

The CLI prints ``mitogan: error: <message>`` for these and exits with status 2, never a traceback.
"""

__all__ = ["MitoganError", "InputError", "ConfigError", "one_line", "torch_load_problem"]


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


def torch_load_problem(e: Exception) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, as the ``problem`` of an ``InputError``.

    Torch's own text advises re-running with ``weights_only=False``, which runs whatever code the file holds;
    that advice is never passed on.
    """
    text = str(e)
    if "weights_only" in text or "Weights only" in text or type(e).__name__ == "UnpicklingError":
        return ("holds Python objects other than tensors (or is damaged); MitoGAN reads tensors only and never "
                "runs code from a file: re-create it with MitoGAN")
    return f"cannot be read as PyTorch tensors ({type(e).__name__}: {one_line(text, 200)}); re-create it with MitoGAN"
