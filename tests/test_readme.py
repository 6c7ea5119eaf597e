"""README.md stays short, starts its Quick start with the two commands, and its example runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAX_LINES = 250


def section(title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_readme_is_short():
    lines = README.count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines, at most {MAX_LINES}: move detail into docs/"


def test_quick_start_starts_with_make_demo_and_make_test():
    block = re.search(r"```bash\n(.*?)```", section("Quick start"), re.DOTALL)
    assert block, "the Quick start section has no bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands[:2] == ["make demo", "make test"], commands


def test_example_runs(tmp_path):
    block = re.search(r"```python\n(.*?)```", section("Example"), re.DOTALL)
    assert block, "the Example section has no python block"
    script = tmp_path / "example.py"
    script.write_text(block.group(1), encoding="utf-8")
    # The checkout's pgnface, whatever the interpreter has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    # The example prints what it computed: the alignment of 2 * x + 1 onto x recovers scale 2.
    assert "scale 2.00" in result.stdout, result.stdout


def test_readme_links_exist():
    missing = [
        target
        for target in re.findall(r"\]\(([^)#]+)\)", README)
        if "://" not in target and not (ROOT / target).exists()
    ]
    assert not missing, f"README.md links to missing files: {missing}"
