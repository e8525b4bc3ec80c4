"""The Console's templates on their own: what the overview says of engines of each kind."""

from __future__ import annotations

import re

from sijo.console.pages import render


def render_overview(engines: dict[str, dict[str, float]]) -> str:
    return render("overview.html", session=None, engines=engines, models=["claude-sonnet-4-6"], cache_entries=3)


def test_the_overview_shows_local_engines_upstream_health_and_the_rest() -> None:
    html = render_overview(
        {
            "default": {"slots": 8, "running": 2, "waiting": 1, "kv_cells_used": 300, "kv_size": 65536,
                        "kept_prefixes": 4, "host_bytes": 3 * 1048576, "prompt_tokens": 10,
                        "reused_tokens": 5, "generated_tokens": 7},
            "gpu": {"upstreams": 2, "upstreams_healthy": 1, "running": 0, "requests": 5, "upstream_failures": 1},
            "plugin": {"kv_size": 1024},  # a partial report renders, with dashes
            "other": {"requests": 9},
        }
    )  # fmt: skip
    assert re.search(r'data-engine="default">.*?300 / 65536.*?3.0 MB', html, re.S)
    upstream = re.search(r'<tr class="upstream" data-engine="gpu" data-healthy="1">.*?</tr>', html, re.S)
    assert upstream and 'class="error">1 of 2' in upstream.group(0)
    assert 'data-engine="plugin"' in html and 'data-engine="other"' in html
    assert "Prompt-cache entries: 3" in html
