"""Fenced code blocks of a Markdown text, for the tests that check the docs' examples."""

from __future__ import annotations

import re

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\S*)\s*$")


def fenced_blocks(text: str, name: str) -> list[tuple[int, str, str, str]]:
    """(opening line, language, body, the last non-blank line before the fence) per block. A block
    may be indented (inside a list item); its body is given without that indentation."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = opening.group("indent")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == indent + "```"), None)
        assert end is not None, f"{name}:{i + 1}: unclosed code block"
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:end]]
        found.append((i + 1, opening.group("lang"), "\n".join(body) + "\n", previous.strip()))
        i = end + 1
    return found
