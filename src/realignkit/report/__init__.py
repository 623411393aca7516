"""realignkit.report: HTML reports rendered only from results.json (floor 1; imports nothing of ours but common).

`render_report(results: dict) -> str` and `write_report(results_json_path, html_path)`.
"""

from realignkit.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
