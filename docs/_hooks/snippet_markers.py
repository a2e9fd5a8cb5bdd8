"""mkdocs hook: fail the build when a page renders a literal snippet marker.

``pymdownx.snippets`` replaces a line ``--8<-- "path"`` with the file's text. A
marker it does not recognise stays in the page as text, and ``mkdocs build
--strict`` says nothing: that is how docs/plugins/logging.md once showed
``--8 < --"docs/examples/logging_json.py"`` (a formatter had put spaces around
the ``<``). This hook reads every page's rendered HTML as text, code blocks
included, and raises `PluginError` naming the page and the marker, so the build
fails whatever the form: ``--8<--``, ``--8 < --``, ``-8<-``, ``--8&lt;--``.
Registered in mkdocs.yml under ``hooks:``.
"""

from __future__ import annotations

import html
import re
from typing import Any, Final

from mkdocs.exceptions import PluginError

__all__ = ["find_markers", "on_page_content"]

# Scissors: one or two dashes, an 8, a "<", one or two dashes, with any spacing.
_MARKER: Final = re.compile(r"-{1,2}[ \t]*8[ \t]*<[ \t]*-{1,2}")
_TAG: Final = re.compile(r"<[^>]*>")


def find_markers(page_html: str) -> list[str]:
    """Return each line of ``page_html``'s text that contains a snippet marker."""
    text = html.unescape(_TAG.sub("", page_html))
    return [line.strip() for line in text.splitlines() if _MARKER.search(line)]


def on_page_content(html: str, page: Any, **_: Any) -> str:
    """Raise `PluginError` if the rendered page still shows a snippet marker."""
    found = find_markers(html)
    if found:
        raise PluginError(
            f"{page.file.src_uri}: a snippet include was not expanded and would be shown "
            f"as text: {found[0]!r}. Write it as a line of its own, exactly "
            '--8<-- "path/to/file", or show the code inline.'
        )
    return html
