"""Sphinx configuration of the pgnface documentation site (`make docs`)."""

import importlib
import pkgutil
import sys
import types
from pathlib import Path

import pgnface

# Local extensions (docs/_ext): the package's plain-text docstrings read as reStructuredText.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "pgnface"
author = "pgnface contributors"
copyright = "pgnface contributors"
release = pgnface.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "plain_docstrings",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path = ["_templates"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = "pgnface"

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as a field list: NamedTuple fields are also documented as members.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The API reference is generated from the package itself (one page per module), so a
# module added to the package appears without editing the docs.
autosummary_generate = True


def _package_api():
    """Finds the submodules hidden behind a function of the same name.

    ``pgnface.ops.synthesize`` is both a module and the function the package
    re-exports; attribute lookup finds the function, so such modules get no page of
    their own and their public names are documented on the package's page instead.

    Returns:
        (hidden modules, {package: names its page documents}).
    """
    hidden, package_members = set(), {}
    for info in pkgutil.walk_packages(pgnface.__path__, "pgnface."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        for sub in pkgutil.iter_modules(package.__path__):
            attr = getattr(package, sub.name, None)
            if attr is not None and not isinstance(attr, types.ModuleType):
                hidden.add(f"{info.name}.{sub.name}")
        names = []
        for name in getattr(package, "__all__", []):
            home = getattr(getattr(package, name), "__module__", "")
            if home in hidden or home.rpartition(".")[2].startswith("_"):
                names.append(name)  # its own module has no page (hidden or private)
        if names:
            package_members[info.name] = names
    return sorted(hidden), package_members


_hidden, _package_members = _package_api()
autosummary_context = {"hidden_modules": _hidden, "package_members": _package_members}
# autosummary still writes a stub for each hidden module; they are not part of the site.
exclude_patterns += [f"api/{name}.rst" for name in _hidden]
