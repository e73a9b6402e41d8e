"""The ``mitogan`` command. Each sub-command lives in its own module here with ``register(subparsers)``,
or comes from an installed plugin (entry point group ``mitogan.commands``: the search layer's
``search.cli``), so the core never imports the packages built on top of it.

Errors meant for a person (``MitoganError``, and the file system's ``OSError``) print as one line,
``mitogan: error: ...``, exit status 2; so do usage errors, and library warnings print as one line each.
Ctrl-C ends a command with status 130 and SIGTERM with 143, after the command's own cleanup (long loops poll
a :class:`StopRequest` and stop at a consistent point, saying how to resume).
Every sub-command gets the same conventions here, after it registers: ``-v/--verbose`` (repeatable: more
log detail), ``-q/--quiet`` (no progress bars; results and errors still print) and plain-text ``--help``
whose defaults are shown only when there is a real one.

Commands that drive a local Ray (``search``, ``fit-sim``: ``set_defaults(supervised=True)``) run, from the
command line, in a child process in a session of its own, with this process as a thin supervisor that passes
on SIGINT/SIGTERM and returns the child's status (:func:`entry`). A job scheduler's stop signals the whole
process group (``timeout``, ``scancel``, systemd); without the supervisor Ray's own processes got it at the
same moment as the driver, and Ray's core worker could end the driver (status 1, no resume message) before
its handler ran. Behind the supervisor only the driver is signalled, and it stops the way Ctrl-C does.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from importlib.metadata import entry_points
from pathlib import Path

from mitogan import claim
from mitogan.errors import MitoganError, one_line

__all__ = ["main", "entry", "build_parser", "plugin", "HelpFormatter", "ENVIRONMENT", "StopRequest", "Terminated", "one_line"]

# sub-command modules, in the order shown by --help
COMMANDS = ["simulate", "preprocess", "train", "evaluate", "search", "fit-sim", "export", "synth", "explain"]

# Every environment variable MitoGAN reads (or hands to the library that does), for `mitogan --help`.
ENVIRONMENT = {
    "MITOGAN_CACHE_DIR": "cache of preprocessed tiles, the built-in simulated dataset and metric references "
                         "(default: ~/.cache/mitogan)",
    "WANDB_MODE": "W&B mode for --wandb and search trials: offline (the default without an API key), online or "
                  "disabled",
    "WANDB_API_KEY": "W&B key; when set, runs go online unless WANDB_MODE says otherwise",
    "WANDB_PROJECT": "W&B project of search trials (default: mitogan)",
    "WANDB_DIR": "where W&B writes its run files (read by wandb; default: the run or search folder)",
    "RAY_ADDRESS": "Ray cluster for `mitogan search` when --address is not given (default: a local Ray)",
    "RAY_AUTH_MODE, RAY_AUTH_TOKEN": "Ray token authentication for multi-node clusters (see cluster/)",
    "AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION": "S3-compatible server and region for "
                                                                 "`mitogan search --storage s3://...` (credentials: "
                                                                 "the usual AWS chain)",
    "MITOGAN_RESOURCE_WAIT_S": "with --address: how long `mitogan search` waits for a node that can hold one "
                               "trial's CPUs/GPUs to join (autoscaling clusters) before it fails (default: 300)",
    "CUDA_VISIBLE_DEVICES": "GPUs that train, synth and search may use (read by PyTorch and Ray)",
    "RAY_CHDIR_TO_TRIAL_DIR": "Ray Tune's: 0 keeps search trials in their worker's folder (default: each trial "
                              "runs in the folder Ray uploads)",
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "Ray Tune's: how long a reused search worker waits for a stopped trial to "
                                      "end (default here: 600)",
    "TUNE_GLOBAL_CHECKPOINT_S": "Ray Tune's: seconds between a search's experiment-state saves (default here: "
                                "saving takes <= 1 % of the time, at least every 2 s)",
    "MITOGAN_SUPERVISED": "set to 1 by `mitogan search` and `mitogan fit-sim` in the driver they run behind a "
                          "small supervisor (its own session, so a stop of the whole process group reaches only "
                          "the driver); not for users to set",
}


def _plain(text: str | None) -> str | None:
    """reStructuredText markup of the module docstrings as plain text: ``x`` -> `x`, ``::`` -> ``:``."""
    if not text:
        return text
    text = re.sub(r":[a-z]+:`([^`]+)`", r"`\1`", text)  # :func:`x` roles
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return re.sub(r"::$", ":", text, flags=re.M)


class HelpFormatter(argparse.HelpFormatter):
    """Paragraphs re-wrapped, indented blocks (usage examples) kept as written, and "(default: X)" only
    where there is a default worth saying (not None, not a flag's False, not an empty list)."""

    def _fill_text(self, text, width, indent):
        out = []
        for para in re.split(r"\n\s*\n", textwrap.dedent(text).strip("\n")):
            if para.startswith((" ", "\t")):
                out.append("\n".join(indent + line for line in para.splitlines()))
            else:
                out.append(textwrap.fill(" ".join(para.split()), width, initial_indent=indent,
                                         subsequent_indent=indent))
        return "\n\n".join(out)

    def _get_help_string(self, action):
        help = action.help or ""
        default = action.default
        if ("default" in help or default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or default == [] or action.nargs == 0 or not action.option_strings):
            return help
        return f"{help} (default: {default})"


def _common_options(p: argparse.ArgumentParser) -> None:
    """-v/-q on every command (a command that defines its own keeps it) and the plain-text formatter."""
    p.formatter_class = HelpFormatter
    p.description = _plain(p.description)
    p.epilog = _plain(p.epilog)
    for action in p._actions:
        action.help = _plain(action.help)
    if "-q" not in p._option_string_actions and "--quiet" not in p._option_string_actions:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (results and errors still print)")
    if "-v" not in p._option_string_actions:
        p.add_argument("-v", "--verbose", action="count", default=0, help="more detail in the log (-vv: debug)")


def _epilog() -> str:
    width = max(len(k) for k in ENVIRONMENT) + 4
    rows = "\n".join(textwrap.fill(text, 100, initial_indent=f"  {name:<{width - 2}}", subsequent_indent=" " * width)
                     for name, text in ENVIRONMENT.items())
    return (f"environment variables:\n\n{rows}\n\n"
            "Run `mitogan COMMAND --help` for a command's options. Each command reads what the one before wrote: "
            "`mitogan preprocess --out D`, `mitogan train --data D --out R`, `mitogan export R --out B`, "
            "`mitogan synth B --out S`.")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too (``mitogan train: error: ...; see `mitogan train --help```), exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message, 600)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mitogan", description="MitoGAN: find stable GANs for small fluorescence-microscopy datasets of "
                                    "mitochondria (Ray Tune + Optuna), then generate synthetic data.",
        epilog=_epilog(), formatter_class=HelpFormatter)
    from mitogan import __version__

    parser.add_argument("--version", action="version", version=f"mitogan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    plugins = {ep.name: ep for ep in entry_points(group="mitogan.commands")}
    for name in COMMANDS:
        if name in plugins:
            module = plugins[name].load()
        else:
            try:
                module = importlib.import_module(f"mitogan.cli.{name}")
            except ModuleNotFoundError as e:
                if e.name == f"mitogan.cli.{name}":
                    continue  # neither built in nor installed as a plugin
                raise
        module.register(sub)
        _common_options(sub.choices[name])
    return parser


def plugin(name: str):
    """The object an installed package registered under ``name`` in the ``mitogan.plugins`` entry point
    group (e.g. ``export_search`` from the search layer), or None when nothing provides it."""
    found = list(entry_points(group="mitogan.plugins", name=name))
    return found[0].load() if found else None


def _configure_logging(args) -> None:
    verbose = getattr(args, "verbose", 0) or 0
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# set in the supervised child's environment (see the module docstring): its process group holds only itself
# and its local Ray, so a group signal can no longer reach Ray's processes from outside
SUPERVISED_ENV = "MITOGAN_SUPERVISED"


def entry() -> int:
    """The ``mitogan`` console script (and ``python -m mitogan``): :func:`main` with supervision."""
    return main(supervise=True)


def main(argv: list[str] | None = None, *, supervise: bool = False) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if supervise and getattr(args, "supervised", False) and os.environ.get(SUPERVISED_ENV) != "1":
        return supervise_child([sys.executable, "-m", "mitogan", *(sys.argv[1:] if argv is None else argv)])
    _configure_logging(args)
    previous = _on_sigterm(_raise_terminated)
    show, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return int(args.func(args) or 0)
    except MitoganError as e:
        print(f"mitogan: error: {one_line(str(e), 600)}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no (disk full, permissions, a path gone): one line, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"mitogan: error: {where}{one_line(e.strerror or str(e), 600)} ({type(e).__name__})", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated) from a scheduler or `kill`
        term = isinstance(e, Terminated)
        print(f"mitogan: {'terminated' if term else 'interrupted'}" + (f"; {e}" if str(e) else ""), file=sys.stderr)
        return 143 if term else 130
    finally:
        _on_sigterm(previous)
        warnings.showwarning = show
        claim.release_all()  # the output folders this command claimed (main() may run again in-process)


def supervise_child(cmd: list[str]) -> int:
    """Run ``cmd`` in a child in a new session, with ``MITOGAN_SUPERVISED=1``, and wait for it; SIGINT and
    SIGTERM that reach this process are passed on to the child alone; Ctrl-Z (SIGTSTP) stops every process of
    the child's session (the driver and the local Ray it started, trial workers included) with this process, and
    SIGCONT (`fg`, `bg`) resumes them; returns its status (128 + N when signal N ended it). The child dies with
    this process (Linux ``PR_SET_PDEATHSIG``: SIGKILL), so killing the supervisor is killing the driver, as before."""
    parent = os.getpid()
    die_with_parent = _death_signal_setter()

    def in_child():  # in the child, before it runs Python again (exec)
        if die_with_parent is not None:
            die_with_parent()
        if os.getppid() != parent:  # the supervisor died before the death signal was set
            os._exit(137)

    child = subprocess.Popen(cmd, env={**os.environ, SUPERVISED_ENV: "1"},
                             start_new_session=True, preexec_fn=in_child)

    def forward(signum, frame):
        if child.returncode is None:
            child.send_signal(signum)

    def group(signum):  # the child's session: the driver and the local Ray it started, trial workers included
        if child.returncode is None:
            for pid in _session(child.pid):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    def suspend(signum, frame):  # Ctrl-Z: the search stops with the terminal's job, as it did unsupervised
        # SIGSTOP, not SIGTSTP: the kernel drops a terminal stop sent to a process group without a parent in its
        # session (the child's always, this one's when it runs in a session of its own)
        group(signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)  # until `fg` / `bg` (SIGCONT), which the handler below passes on

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, suspend)
    previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, lambda signum, frame: group(signal.SIGCONT))
    try:
        code = child.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 128 - code if code < 0 else code


def _session(sid: int) -> list[int]:
    """The processes of session ``sid``, the child's first (Linux ``/proc``; elsewhere its process group only)."""
    if not Path("/proc/self/stat").exists():
        return [-sid]  # os.kill(-pgid) signals the group
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:  # pid (comm) state ppid pgrp session ...: comm may hold spaces and parentheses
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    pids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
    return sorted(pids, key=lambda p: p != sid)


def _death_signal_setter():
    """A function that makes the calling process get SIGKILL when its parent dies (Linux prctl), or None
    where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A library's warning as one line (Python's own format adds the source line, and some span several)."""
    print(f"mitogan: warning: {one_line(str(message), 300)} ({category.__name__})", file=file or sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs; exit status 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


_NOT_SET = object()


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM (main thread only); returns the previous one (to install back)."""
    if handler is _NOT_SET or threading.current_thread() is not threading.main_thread():
        return _NOT_SET
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)
    return previous


class StopRequest:
    """``with StopRequest() as stop:`` — the first SIGINT/SIGTERM only sets ``stop.signum`` (a loop polls
    ``stop()`` and ends at a consistent point); a second one interrupts at once as usual."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        self.signum = signum  # the command prints one line when it has stopped

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(entry())
