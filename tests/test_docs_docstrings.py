"""docs/_ext/plain_docstrings.py: the package's plain-text docstrings become valid reStructuredText."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("plain_docstrings", ROOT / "docs" / "_ext" / "plain_docstrings.py")
plain_docstrings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plain_docstrings)
convert = plain_docstrings.plain_text_to_rst


def test_list_right_after_a_paragraph_gets_blank_lines_around_it():
    lines = ["Protocol:", "- first item", "  continued", "- second", "After the list."]
    assert convert(lines) == ["Protocol:", "", "- first item", "  continued", "- second", "", "After the list."]


def test_numbered_lists_too():
    assert convert(["Steps:", "1. one", "2. two"]) == ["Steps:", "", "1. one", "2. two"]


def test_heading_with_an_indented_block_becomes_a_literal_block():
    lines = ["Outputs:", "    images [B, 3, S, S] ->", "        landmarks |x|", "  regress only:", "Text."]
    assert convert(lines) == [
        "Outputs::",
        "",
        "    images [B, 3, S, S] ->",
        "        landmarks |x|",  # literal: left as written
        "  regress only:",
        "Text.",
    ]


def test_google_sections_are_left_to_napoleon():
    lines = ["Summary.", "", "Args:", "    x: [B, 3] points with |x| < 1.", "", "Returns:", "    y."]
    assert convert(lines) == [
        "Summary.",
        "",
        "Args:",
        r"    x: [B, 3] points with \|x\| < 1.",
        "",
        "Returns:",
        "    y.",
    ]


def test_bars_are_escaped_outside_inline_literals_only():
    assert convert(["binned by |yaw| in ``a|b``"]) == [r"binned by \|yaw\| in ``a|b``"]


def test_plain_paragraphs_are_unchanged():
    lines = ["One line.", "", "Two", "lines."]
    assert convert(lines) == lines
