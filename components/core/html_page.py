"""The page around every hand-written HTML report (evaluation, drift, A/B, segments, review
suggestions): one shell and one style, so the reports look alike and a change of look is made once."""
from __future__ import annotations

import html

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
         "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;vertical-align:top}img{max-width:100%}")


def html_page(title: str, body: str, style: str = "") -> str:
    """A whole page: `body` (HTML) under the shared style, then the report's own `style` rules."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}{style}</style></head><body>{body}</body></html>\n")
