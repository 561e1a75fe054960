"""The dashboard: reports/index.html from the history store (docs/farm.md).

data      what the page shows, read from the store in a few indexed queries
render    the page: jinja2 template, plotly's JS bundle inlined once
"""

from harness.dashboard.render import render_dashboard

__all__ = ["render_dashboard"]
