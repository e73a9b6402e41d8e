"""The core package stands alone: importing every mitogan module pulls in neither Ray, Optuna, wandb nor
the search layer (which reaches the CLI as a plugin, through an entry point)."""

import ast
import subprocess
import sys
from pathlib import Path

import mitogan

NEVER = ("ray", "optuna", "search")  # not even lazily, inside a function
LAZY_ONLY = ("wandb",)  # only inside the function that logs a local run


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


def _imports(tree: ast.AST):
    """(top-level package, line, at module level?) of every import statement and import_module("...") call."""
    top = {id(n) for n in ast.iter_child_nodes(tree)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            yield name.split(".")[0], node.lineno, id(node) in top


def test_mitogan_source_never_imports_the_search_layer_ray_or_optuna():
    # import time is not enough: a lazy import inside a function only runs when that function does
    bad = []
    for path in sorted(Path(mitogan.__file__).parent.rglob("*.py")):
        for name, line, module_level in _imports(ast.parse(path.read_text(), str(path))):
            if name in NEVER or (name in LAZY_ONLY and module_level):
                bad.append(f"{path.relative_to(Path(mitogan.__file__).parent.parent)}:{line}: {name}")
    assert bad == []


def test_the_source_scan_catches_lazy_imports():
    code = "import os\ndef f():\n    from search.report import x\n    import wandb\n    importlib.import_module('ray.tune')\n"
    found = list(_imports(ast.parse(code)))
    assert found == [("os", 1, True), ("search", 3, False), ("wandb", 4, False), ("ray", 5, False)]


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
