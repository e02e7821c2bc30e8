"""The `tutorials` extra in setup.cfg installs everything the tutorials import."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: install_requires: always there, so no extra needs to name them.
CORE = {"torch", "numpy", "scipy", "captum", "tqdm"}


def _extra(name: str) -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.extras_require"][name].split("\n")
    return {re.split(r"[<>=!~ ;\[]", line.strip())[0].lower() for line in lines if line.strip()}


def _tutorial_modules() -> set[str]:
    modules = set()
    for path in sorted((ROOT / "tutorials").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    local = {path.stem for path in (ROOT / "tutorials").glob("*.py")}  # e.g. their _models.py
    return modules - set(sys.stdlib_module_names) - {"torchspex", "__future__"} - local


def test_tutorials_extra_covers_every_tutorial_import() -> None:
    extra = _extra("tutorials")
    dists = packages_distributions()
    missing = []
    for module in sorted(_tutorial_modules()):
        names = {d.lower() for d in dists.get(module, [module])}
        if not names & (extra | CORE):
            missing.append(f"{module} ({', '.join(sorted(names))})")
    assert not missing, f"setup.cfg's `tutorials` extra lacks {missing}"
    assert "ipython" in extra  # Captum's visualize_text, which tutorial 02 shows, needs it


def test_readme_names_the_tutorials_extra() -> None:
    assert '.[tutorials]' in (ROOT / "README.md").read_text()
