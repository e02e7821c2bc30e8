"""Sphinx configuration of the API reference (autodoc + napoleon over the Google docstrings).

Build: ``python -m sphinx -W --keep-going -b html docs/api docs/api/_build/html``.

The pages are written at build time from the ``__all__`` of each public module (:data:`PAGES`),
so a name added to an ``__all__`` is documented without touching this folder. Each object is
documented once, on the page of the module that defines it; the other pages that export it
link there.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
os.environ.setdefault("MPLBACKEND", "Agg")

from sphinx.application import Sphinx  # noqa: E402

import torchspex  # noqa: E402

project = "torchspex"
author = "torchspex developers"
copyright = "torchspex developers"
release = version = torchspex.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
templates_path: list[str] = []

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # ``Attributes:`` as fields, not directives that clash with members
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
autoclass_content = "class"

#: ``(module, title)`` of every page, in the order a reader meets them: the entry points, the
#: model side, the views, then the math side and the machinery.
PAGES = [
    ("torchspex", "torchspex: entry points and the result"),
    ("torchspex.attr", "torchspex.attr: attribution over a model's inputs"),
    ("torchspex.llm", "torchspex.llm: prompts of language models, layers"),
    ("torchspex.grouping", "torchspex.grouping: what a feature is"),
    ("torchspex.viz", "torchspex.viz: plots and Captum visualization"),
    ("torchspex.interop", "torchspex.interop: shapiq and shap"),
    ("torchspex.optimize", "torchspex.optimize: the best mask of a spectrum"),
    ("torchspex.fourier", "torchspex.fourier: spectra, transforms, indices"),
    ("torchspex.sampling", "torchspex.sampling: which masks to query"),
    ("torchspex.decoders", "torchspex.decoders: from queries to a spectrum"),
    ("torchspex.cache", "torchspex.cache: the evaluation store"),
    ("torchspex.distributed", "torchspex.distributed: ranks and executors"),
    ("torchspex.errors", "torchspex.errors: exceptions"),
]
PAGE_NAMES = [name for name, _ in PAGES]


def _home(name: str, obj: object, page: str) -> str:
    """The page that documents ``obj``: the deepest page above the module defining it (for a
    constant or alias, the deepest page exporting the same object under the same name)."""
    module = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and isinstance(module, str):
        pages = [p for p in PAGE_NAMES if module == p or module.startswith(p + ".")]
    else:
        pages = [p for p in PAGE_NAMES
                 if name in _exports(p) and getattr(importlib.import_module(p), name) is obj]
    return max(pages, key=len) if pages else page


def _exports(module_name: str) -> list[str]:
    return list(importlib.import_module(module_name).__all__)


def _data_doc(module_name: str, name: str) -> list[str]:
    """The ``#:`` comment of a constant or alias, from whichever submodule defines it."""
    from sphinx.pycode import ModuleAnalyzer

    package = importlib.import_module(module_name)
    candidates = [module_name]
    if hasattr(package, "__path__"):
        candidates += [f"{module_name}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    for candidate in candidates:
        try:
            docs = ModuleAnalyzer.for_module(candidate).find_attr_docs()
        except Exception:  # a module without source: nothing to read
            continue
        if ("", name) in docs:
            return [line for line in docs[("", name)] if line.strip()]
    return []


def _page(module_name: str, title: str) -> str:
    module = importlib.import_module(module_name)
    names = _exports(module_name)
    lines = [title, "=" * len(title), "", f".. automodule:: {module_name}", "   :no-members:", ""]
    here, elsewhere = [], []
    for name in names:
        obj = getattr(module, name)
        home = _home(name, obj, module_name)
        (here if home == module_name else elsewhere).append((name, home, obj))
    if elsewhere:
        lines += ["Also exported here (documented on the page of their module):", ""]
        lines += [f"* :obj:`{module_name}.{name} <{home}.{name}>`" for name, home, _ in elsewhere]
        lines.append("")
    for name, _, obj in here:
        target = f"{module_name}.{name}"
        if inspect.isclass(obj):
            lines += [f".. autoclass:: {target}", ""]
        elif inspect.isfunction(obj):
            lines += [f".. autofunction:: {target}", ""]
        else:  # a constant or alias: its ``#:`` comment where it is defined, and its value
            value = repr(obj)
            value = value if len(value) <= 80 else value[:77] + "..."
            lines += [f".. data:: {target}", f"   :value: {value}", ""]
            lines += [f"   {line}" for line in _data_doc(module_name, name)] + [""]
    return "\n".join(lines)


def _write_pages(app: Sphinx) -> None:
    out = HERE / "_generated"
    out.mkdir(exist_ok=True)
    for module_name, title in PAGES:
        text = _page(module_name, title)
        path = out / f"{module_name}.rst"
        if not path.exists() or path.read_text() != text:  # keep mtimes for incremental builds
            path.write_text(text)


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _write_pages)
