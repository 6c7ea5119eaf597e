"""Sphinx configuration of the pgnface documentation site (`make docs`)."""

import importlib
import pkgutil
import re
import types

import pgnface

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
        names = [
            name
            for name in getattr(package, "__all__", [])
            if getattr(getattr(package, name), "__module__", "") in hidden
            or getattr(getattr(package, name), "__module__", "").rpartition(".")[2].startswith("_")
        ]
        if names:
            package_members[info.name] = names
    return sorted(hidden), package_members


_hidden, _package_members = _package_api()
autosummary_context = {"hidden_modules": _hidden, "package_members": _package_members}
# autosummary still writes a stub for each hidden module; they are not part of the site.
exclude_patterns += [f"api/{name}.rst" for name in _hidden]

_SECTION = re.compile(
    r"^(Args|Arguments|Attributes|Example|Examples|Keyword Args|Methods|Note|Notes|Other Parameters|"
    r"Parameters|Raises|References|Returns|Return|See Also|Todo|Warning|Warns|Yield|Yields):\s*$"
)
_LIST_ITEM = re.compile(r"^(\s*)(- |\* |\d+\. )")


def _escape_bars(line):
    """Escapes ``|`` outside inline literals: docstrings write |yaw| for an absolute value."""
    parts = line.split("``")
    return "``".join(part if i % 2 else part.replace("|", r"\|") for i, part in enumerate(parts))


def plain_text_to_rst(lines):
    """Reads the package's plain-text docstring layout as reStructuredText.

    The docstrings are written to be read in a terminal: a list may follow its
    introducing line directly, an indented block after ``Heading:`` is a table or a
    code sample, and ``|x|`` is an absolute value. reStructuredText needs a blank line
    before a list, ``::`` before a literal block and no bare ``|``, so this adds them
    (Google-style sections are left to napoleon).

    Args:
        lines: the docstring's lines, dedented.

    Returns:
        The lines as reStructuredText.
    """
    out = []
    literal_indent = None
    list_indent = None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        blank = not line.strip()
        if literal_indent is not None:
            if blank or indent > literal_indent:
                out.append(line)
                continue
            literal_indent = None
        item = _LIST_ITEM.match(line)
        if not blank and list_indent is not None and indent <= list_indent and not item:
            out.append("")
            list_indent = None
        if item and out and out[-1].strip() and list_indent is None:
            out.append("")
        if item:
            list_indent = len(item.group(1))
        nxt = next((nl for nl in lines[i + 1 :] if nl.strip()), "")
        next_indent = len(nxt) - len(nxt.lstrip())
        starts_block = (
            indent == 0
            and line.rstrip().endswith(":")
            and not line.rstrip().endswith("::")
            and not _SECTION.match(line)
            and nxt
            and next_indent > 0
            and not _LIST_ITEM.match(nxt)
        )
        if starts_block:
            out.extend([_escape_bars(line) + ":", ""])
            literal_indent = 0
            list_indent = None
            continue
        out.append(_escape_bars(line))
    return out


def _process_docstring(app, what, name, obj, options, lines):
    lines[:] = plain_text_to_rst(lines)


def setup(app):
    # Runs before napoleon (priority 500), which then converts the Google sections.
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)
