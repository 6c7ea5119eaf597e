"""The documentation matches the source tree: the design page's layer map names every module of
pgnface and nothing else, and every repository path the docs mention exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
# A row of the layer map: | `pgnface.x.y` | what it holds |
MAP_ROW = re.compile(r"^\|\s*`(pgnface(?:\.\w+)*)`\s*\|", re.MULTILINE)
# A repository path in backticks or a Markdown link; placeholders (<op>, *, {a,b}) are not paths.
REPO_PATH = re.compile(r"[`(]((?:pgnface|csrc|tests|bench|scripts|experiments|docs)/[\w./-]*)[`)]")
GENERATED = {"pgnface/_build_info.py"}  # written by the build, not part of the source tree


def source_modules():
    """Every package and module of pgnface, as dotted names, from the files in the tree."""
    modules = set()
    for path in (ROOT / "pgnface").rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.as_posix() in GENERATED:
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.add(".".join(parts))
    return modules


def documented_modules():
    return set(MAP_ROW.findall(DESIGN.read_text(encoding="utf-8")))


def test_design_page_names_every_module():
    missing = sorted(source_modules() - documented_modules())
    assert not missing, f"docs/design.md's layer map lacks these modules: {missing}"


def test_every_module_on_the_design_page_exists():
    stale = sorted(documented_modules() - source_modules())
    assert not stale, f"docs/design.md names modules that do not exist: {stale}"


def test_the_layer_map_is_read():
    # The parser must see the table: a format change that hides it would make the tests above vacuous.
    assert {"pgnface", "pgnface.ops", "pgnface.ops.synthesize", "pgnface.cli"} <= documented_modules()


def test_paths_named_in_the_docs_exist():
    pages = sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "experiments").rglob("*.md")) + [ROOT / "README.md"]
    pages = [page for page in pages if "_build" not in page.parts]
    missing = []
    for page in pages:
        for path in REPO_PATH.findall(page.read_text(encoding="utf-8")):
            if any(c in path for c in "<>*{}") or path.endswith(".") or "_build" in path:
                continue  # a placeholder, or the site's build output
            if not (ROOT / path.rstrip("/")).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, "paths named in the docs do not exist:\n" + "\n".join(missing)
