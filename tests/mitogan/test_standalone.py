"""The core package stands alone: importing every mitogan module pulls in neither Ray, Optuna, wandb nor
the search layer (which reaches the CLI as a plugin, through an entry point)."""

import subprocess
import sys


def test_mitogan_imports_no_ray_optuna_wandb_or_search():
    code = (
        "import importlib, pkgutil, sys, mitogan\n"
        "for m in pkgutil.walk_packages(mitogan.__path__, 'mitogan.'):\n"
        "    if m.name != 'mitogan.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('ray', 'optuna', 'wandb', 'search'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"mitogan imported: {out.stdout.strip()}"


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    # a MitoganError surfaces as a single 'mitogan: error:' line with exit status 2, never a traceback
    bad = tmp_path / "c.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    out = subprocess.run([sys.executable, "-m", "mitogan", "train", "--config", str(bad), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mitogan: error: {bad}: train.stepz: unknown config key")
    assert "Traceback" not in out.stderr


def test_search_command_and_search_export_come_from_the_search_plugin():
    from mitogan.cli import build_parser, plugin

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sub.choices["search"].get_default("func").__module__ == "search.cli"
    from search.report import export_search

    assert plugin("export_search") is export_search and plugin("no_such_plugin") is None
