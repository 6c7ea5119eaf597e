"""Sphinx extension: the package's plain-text docstring layout read as reStructuredText.

The docstrings are written to be read in a terminal and by napoleon (Google style): a list may
follow its introducing line directly, an indented block after ``Heading:`` is a table or a code
sample, and ``|x|`` is an absolute value. reStructuredText needs a blank line before and after a
list, ``::`` before a literal block and no bare ``|``; this extension adds them before napoleon
converts the Google-style sections.
"""

import re

# Google-style section headers, which napoleon converts: never turned into literal blocks.
_SECTION = re.compile(
    r"^(Args|Arguments|Attributes|Example|Examples|Keyword Args|Methods|Note|Notes|Other Parameters|"
    r"Parameters|Raises|References|Returns|Return|See Also|Todo|Warning|Warns|Yield|Yields):\s*$"
)
_LIST_ITEM = re.compile(r"^(\s*)(- |\* |\d+\. )")


def escape_bars(line):
    """Escapes ``|`` outside inline literals, so that ``|yaw|`` is not a substitution reference."""
    parts = line.split("``")
    return "``".join(part if i % 2 else part.replace("|", r"\|") for i, part in enumerate(parts))


def _starts_literal_block(line, following):
    """True for an unindented ``Heading:`` line (not a Google section) followed by an indented block."""
    text = line.rstrip()
    if not text or line[0].isspace() or not text.endswith(":") or text.endswith("::") or _SECTION.match(line):
        return False
    nxt = next((candidate for candidate in following if candidate.strip()), "")
    return bool(nxt) and nxt[0].isspace() and not _LIST_ITEM.match(nxt)


def plain_text_to_rst(lines):
    """Reads a docstring in the package's plain-text layout as reStructuredText.

    Args:
        lines: the docstring's lines, dedented (as autodoc passes them).

    Returns:
        A new list of lines: blank lines around lists, ``::`` before indented blocks introduced
        by an unindented ``Heading:`` line, ``|`` escaped outside inline literals and literal
        blocks.
    """
    out = []
    in_literal = False
    list_indent = None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        blank = not line.strip()
        if in_literal:
            if blank or indent > 0:
                out.append(line)
                continue
            in_literal = False
        item = _LIST_ITEM.match(line)
        if not blank and list_indent is not None and indent <= list_indent and not item:
            out.append("")  # a paragraph after a list
            list_indent = None
        if item and list_indent is None and out and out[-1].strip():
            out.append("")  # a list after a paragraph
        if item:
            list_indent = len(item.group(1))
        if _starts_literal_block(line, lines[i + 1 :]):
            out.extend([escape_bars(line) + ":", ""])
            in_literal = True
            list_indent = None
            continue
        out.append(escape_bars(line))
    return out


def _process_docstring(app, what, name, obj, options, lines):
    lines[:] = plain_text_to_rst(lines)


def setup(app):
    # Priority 400: before napoleon (500), which then converts the Google-style sections.
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
