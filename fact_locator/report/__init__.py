"""Reports of an audit run, built only from `RunResults`: a terminal summary and an HTML file.

    write_summary(results, write_line=None, *, color=None, width=None, quiet=False) -> str
    render_html(results, rendered_at=None) -> str
    write_html(results, path) -> None
    render_results_file(results_path, out_path) -> None
"""

from __future__ import annotations

from fact_locator.report.html import render_html, render_results_file, write_html
from fact_locator.report.terminal import write_summary

__all__ = ["render_html", "render_results_file", "write_html", "write_summary"]
