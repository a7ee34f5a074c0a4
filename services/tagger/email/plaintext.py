"""The plain-text part of an email whose template gives only HTML: the HTML's text, with
paragraphs and line breaks kept, list items as "- ", and links followed by their address.

Mail clients that show the text part (and spam filters that compare the two) then see the same
message as the HTML part. Scripts, styles and the head are left out.
"""

import re
from html.parser import HTMLParser

_SKIPPED = frozenset({"head", "script", "style", "title", "template"})
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "header",
        "footer",
        "table",
        "tr",
        "ul",
        "ol",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "pre",
    }
)
_LINK_SCHEMES = ("http://", "https://", "mailto:")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "td":
            self.parts.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            shown = "".join(self.parts[start:]).strip()
            if href and href.startswith(_LINK_SCHEMES) and href not in shown:
                self.parts.append(f" ({href.removeprefix('mailto:')})")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML fragment or document."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = []
    for line in "".join(parser.parts).split("\n"):
        lines.append(" ".join(line.split()))
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")
