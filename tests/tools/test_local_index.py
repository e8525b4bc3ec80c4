"""The local index: documents read from files, folders and URLs; searched by FTS5 with user text that
is never query syntax; ranked so a natural question finds its answer; scoped by workspace; filtered
by domain; cut to the best passage. The files are real, in a temporary folder; the URLs are served
by a real HTTP server on loopback."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sijo.config import SearchConfig
from sijo.media.fetch import FetchPolicy
from sijo.tools.web_search import SearchQuery, search_backend
from sijo.tools.web_search.documents import Document, file_url, read_file
from sijo.tools.web_search.excerpts import GAP, MAX_TEXT_CHARS, excerpt
from sijo.tools.web_search.indexing import add_sources, matching
from sijo.tools.web_search.local_index import LocalIndex, LocalIndexBackend, fts_query
from sijo.tools.web_search.markup import html_text
from tests.documents import pdf

LOCAL = FetchPolicy(allow=("127.0.0.1",), timeout=5.0)
MARCH_3 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC).timestamp()

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Tide pools &amp; rocks</title>
<style>body { color: red }</style><script>var hidden = "script text";</script></head>
<body><nav>Home</nav><h1>Life in the tide pools</h1><p>Anemones and limpets wait for the tide.</p>
<noscript>Enable JavaScript</noscript><ul><li>one</li><li>two</li></ul></body></html>"""


def doc(url: str, title: str, text: str, modified: datetime | None = None) -> Document:
    return Document(url=url, title=title, text=text, modified=modified)


def query(text: str, workspace: str = "default", max_results: int = 5, **filters: Any) -> SearchQuery:
    return SearchQuery(text=text, workspace=workspace, max_results=max_results, **filters)


def urls(index: LocalIndex, text: str, **kwargs: Any) -> list[str]:
    return [hit.url for hit in index.search(query(text, **kwargs))]


@pytest.fixture
def index(tmp_path: Path) -> LocalIndex:
    return LocalIndex(tmp_path / "index" / "search.db")


@pytest.fixture
def capitals(index: LocalIndex) -> LocalIndex:
    index.put(doc("https://ex.com/paris", "Paris", "Paris is the capital of France, on the Seine."))
    index.put(doc("https://ex.com/berlin", "Berlin", "Berlin is the capital of Germany."))
    index.put(doc("https://ex.com/cafe", "Café culture", "A café serves coffee. Running late, again."))
    index.put(doc("https://ex.com/seoul", "서울", "서울은 대한민국의 수도이다. 한강이 도시를 흐른다."))
    index.put(doc("https://ex.com/ops", "Operators", "alpha beta; use the NEAR operator with care"))
    index.put(doc("https://ex.com/gamma", "Greek", "gamma"))
    return index


# --- ranking and matching -------------------------------------------------------------------------


def test_a_natural_question_finds_its_answer_first(capitals: LocalIndex) -> None:
    found = urls(capitals, "What is the capital of France?")
    assert found[0] == "https://ex.com/paris"
    assert "https://ex.com/berlin" in found  # OR: a partial match still ranks, below


def test_case_diacritics_and_stems_are_folded(capitals: LocalIndex) -> None:
    assert urls(capitals, "CAFE")[0] == "https://ex.com/cafe"
    assert set(urls(capitals, "capitals")) == {"https://ex.com/berlin", "https://ex.com/paris"}
    assert urls(capitals, "run") == ["https://ex.com/cafe"]


def test_korean_words_match_with_their_particles(capitals: LocalIndex) -> None:
    # 서울은 is 서울 (Seoul) with a topic particle; 대한민국의 is 대한민국 (Korea) + "of".
    assert urls(capitals, "대한민국 수도") == ["https://ex.com/seoul"]
    assert urls(capitals, "서울") == ["https://ex.com/seoul"]
    assert urls(capitals, "도쿄") == []


def test_title_matches_weigh_more(index: LocalIndex) -> None:
    index.put(doc("https://ex.com/body", "Notes", "zebra crossing rules and other zebra facts"))
    index.put(doc("https://ex.com/title", "Zebra", "striped animals of Africa"))
    assert urls(index, "zebra")[0] == "https://ex.com/title"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpha NOT beta", {"https://ex.com/ops"}),  # as syntax, NOT would exclude it
        ("gamma AND alpha", {"https://ex.com/ops", "https://ex.com/gamma"}),  # as syntax: no match
        ("NEAR(", {"https://ex.com/ops"}),
        ("NEAR(alpha beta)", {"https://ex.com/ops"}),
        ('"alpha', {"https://ex.com/ops"}),
        ('alpha"', {"https://ex.com/ops"}),
        ("(gamma", {"https://ex.com/gamma"}),
        ("^gamma", {"https://ex.com/gamma"}),
        ("gamma*", {"https://ex.com/gamma"}),
        ("gam*", set()),  # `*` is not a prefix operator
        ("title:gamma", set()),  # not a column filter (Greek's title has no "gamma"): a phrase
        ("{title text}:gamma", set()),  # phrases "title" and "text gamma"
        ("*", set()),
        ('"', set()),
        ('""', set()),
        ('"" OR', set()),
        ("", set()),
        ("   \t\n", set()),
        ("?!.,;:()[]{}", set()),
        ("- + ^ *", set()),
    ],
)
def test_user_text_is_never_query_syntax(capitals: LocalIndex, text: str, expected: set[str]) -> None:
    assert set(urls(capitals, text)) == expected


def test_fts_query_quotes_each_word() -> None:
    assert fts_query('say "hi" OR NEAR(x)') == '"say" OR """hi""" OR "OR" OR "NEAR(x)"'
    assert fts_query("서울 tower") == '"서울"* OR "tower"'
    assert fts_query("  ") is None
    assert fts_query("a a a") == '"a"'


def test_a_lone_surrogate_does_not_break_the_search(capitals: LocalIndex) -> None:
    assert urls(capitals, "gamma \ud800") == ["https://ex.com/gamma"]


SYNTAX = st.sampled_from(
    ['"', "'", "*", "(", ")", ":", "^", "+", "-", "NEAR", "AND", "OR", "NOT", "{", "}", ",", "\x00"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(SYNTAX, st.text(max_size=8)), max_size=12).map("".join))
def test_no_text_makes_the_search_fail(capitals: LocalIndex, text: str) -> None:
    capitals.search(query(text))


# --- workspaces, filters, limits -----------------------------------------------------------------


def test_a_workspace_sees_its_own_and_shared_documents(index: LocalIndex) -> None:
    index.put(doc("https://ex.com/shared", "Shared", "kiwi"))
    index.put(doc("https://ex.com/team", "Team", "kiwi"), "team")
    index.put(doc("https://ex.com/other", "Other", "kiwi"), "other")
    assert set(urls(index, "kiwi", workspace="team")) == {"https://ex.com/shared", "https://ex.com/team"}
    assert urls(index, "kiwi", workspace="default") == ["https://ex.com/shared"]
    assert [d.url for d in index.documents("team")] == ["https://ex.com/shared", "https://ex.com/team"]
    assert len(index.documents()) == 3


def test_domain_filters_and_max_results(index: LocalIndex, tmp_path: Path) -> None:
    for n in range(8):
        index.put(doc(f"https://site{n % 2}.example.com/{n}", f"Doc {n}", "mango"))
    notes = tmp_path / "notes.txt"
    notes.write_text("mango")
    index.put(read_file(notes))
    assert len(urls(index, "mango", max_results=3)) == 3
    assert len(urls(index, "mango", max_results=20)) == 9
    allowed = urls(index, "mango", max_results=20, allowed_domains=("site1.example.com",))
    assert sorted(allowed) == [f"https://site1.example.com/{n}" for n in (1, 3, 5, 7)]
    # Files have no domain: an allow-list leaves them out, a block-list keeps them.
    blocked = urls(index, "mango", max_results=20, blocked_domains=("example.com",))
    assert blocked == [file_url(notes)]
    assert len(urls(index, "mango", max_results=2, blocked_domains=("site0.example.com",))) == 2


def test_adding_a_url_again_replaces_it(index: LocalIndex) -> None:
    first, created = index.put(doc("https://ex.com/a", "Old", "pineapple"))
    assert created
    again, created = index.put(doc("https://ex.com/a", "New", "papaya"), "team")
    assert (again, created) == (first, False)
    assert urls(index, "pineapple", workspace="team") == []
    [hit] = index.search(query("papaya", workspace="team"))
    assert (hit.title, hit.text) == ("New", "papaya")
    assert [(d.id, d.workspace, d.size) for d in index.documents()] == [(first, "team", 6)]


def test_removed_documents_are_not_found(capitals: LocalIndex) -> None:
    paris = capitals.find_url("https://ex.com/paris")
    assert paris is not None
    assert capitals.remove([paris.id, 9999]) == 1
    assert "https://ex.com/paris" not in urls(capitals, "capital")
    assert capitals.get(paris.id) is None


def test_a_missing_index_has_nothing(tmp_path: Path) -> None:
    index = LocalIndex(tmp_path / "none" / "search.db")
    assert index.search(query("anything")) == []
    assert index.documents() == []
    assert index.remove([1]) == 0
    assert not index.path.exists()


async def test_the_backend_searches_off_the_event_loop(tmp_path: Path) -> None:
    config = SearchConfig(index_path=tmp_path / "custom.db")
    LocalIndex(tmp_path / "custom.db").put(doc("https://ex.com/x", "X", "durian"))
    backend = search_backend(config, tmp_path)
    assert isinstance(backend, LocalIndexBackend)
    [hit] = await backend.search(query("durian"))
    assert hit.url == "https://ex.com/x"
    default = search_backend(SearchConfig(), tmp_path / "data")
    assert isinstance(default, LocalIndexBackend)
    assert default.index.path == tmp_path / "data" / "search.db"


# --- long documents -------------------------------------------------------------------------------


def test_a_long_document_leads_with_its_best_passage(index: LocalIndex) -> None:
    filler = " ".join(f"Filler sentence number {n} says nothing at all." for n in range(2000))
    text = "Introduction to the manual.\n\n" + filler + "\n\nThe warranty lasts five years from purchase."
    index.put(doc("https://ex.com/manual", "Manual", text))
    [hit] = index.search(query("how long is the warranty?"))
    assert hit.text.startswith("The warranty lasts five years")
    assert GAP in hit.text
    assert hit.text.split(GAP)[1].startswith("Introduction to the manual.")
    assert len(hit.text) <= MAX_TEXT_CHARS


def test_excerpt_keeps_short_texts_and_early_passages() -> None:
    assert excerpt("short text", "query") == "short text"
    text = "The answer is here. " + "padding words " * 2000
    cut = excerpt(text, "answer")
    assert cut.startswith("The answer is here.")
    assert GAP not in cut
    assert len(cut) <= MAX_TEXT_CHARS


# --- documents from files, folders and URLs -------------------------------------------------------


def test_files_of_each_kind(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("Just   some\r\n\r\n\r\n\r\nplain text.  \n")
    (tmp_path / "notes.md").write_text("Intro line\n\n# Release notes #\n\nVersion 2 is out.\n")
    (tmp_path / "page.html").write_text(PAGE)
    (tmp_path / "report.pdf").write_bytes(pdf("Quarterly report: sales rose.", "Second page."))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("cp1252"))
    plain = read_file(tmp_path / "plain.txt")
    assert (plain.title, plain.text) == ("plain", "Just some\n\nplain text.")
    assert plain.url == (tmp_path / "plain.txt").resolve().as_uri()
    assert read_file(tmp_path / "notes.md").title == "Release notes"
    page = read_file(tmp_path / "page.html")
    assert page.title == "Tide pools & rocks"
    assert page.text == "Home\nLife in the tide pools\nAnemones and limpets wait for the tide.\none\ntwo"
    assert "script text" not in page.text and "color" not in page.text and "JavaScript" not in page.text
    report = read_file(tmp_path / "report.pdf")
    assert report.title == "report"
    assert "Quarterly report: sales rose." in report.text and "Second page." in report.text
    assert read_file(tmp_path / "latin1.txt").text == "café crème"


def test_page_age_is_the_files_modified_date(index: LocalIndex, tmp_path: Path) -> None:
    path = tmp_path / "dated.txt"
    path.write_text("lychee")
    os.utime(path, (MARCH_3, MARCH_3))
    index.put(read_file(path))
    [hit] = index.search(query("lychee"))
    assert hit.page_age == "March 3, 2026"
    index.put(doc("https://ex.com/undated", "Undated", "lychee"))
    assert {h.url: h.page_age for h in index.search(query("lychee"))}["https://ex.com/undated"] is None


def test_html_text_handles_broken_markup() -> None:
    page = html_text("<title>T</title><p>one<p>two &lt;b&gt; <b>three</b><div>four</span>")
    assert page.title == "T"
    assert page.text == "one\ntwo <b> three\nfour"
    assert html_text("no markup at all").text == "no markup at all"
    assert html_text("").title == ""


def test_a_folder_adds_supported_visible_files(index: LocalIndex, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "a.txt").write_text("apple")
    (folder / "sub" / "b.md").write_text("banana")
    (folder / "sub" / "deeper" / "c.HTM").write_text("<p>cherry</p>")
    (folder / ".git" / "config.txt").write_text("hidden folder")
    (folder / ".secret.txt").write_text("hidden file")
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / "data.csv").write_text("x,y")
    added = list(add_sources(index, [str(folder)], workspace=None, policy=LOCAL))
    assert [Path(a.source).name for a in added] == ["a.txt", "b.md", "c.HTM"]
    assert all(a.error is None and a.created for a in added)
    again = list(add_sources(index, [str(folder)], workspace=None, policy=LOCAL))
    assert [a.created for a in again] == [False, False, False]
    assert len(index.documents()) == 3
    assert [d.url for d in matching(index, str(folder / "sub"))] == [
        file_url(folder / "sub" / "b.md"),
        file_url(folder / "sub" / "deeper" / "c.HTM"),
    ]


def test_sources_that_cannot_be_added_say_why(index: LocalIndex, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "good.txt").write_text("fine")
    sources = [
        "/no/such/path",
        str(tmp_path / "empty"),
        str(tmp_path / "image.png"),
        str(tmp_path / "broken.pdf"),
    ]
    added = list(add_sources(index, [*sources, str(tmp_path / "good.txt")], workspace=None, policy=LOCAL))
    errors = [a.error or "" for a in added]
    assert "no such file or folder" in errors[0]
    assert "no .htm .html .markdown .md .pdf .txt files" in errors[1]
    assert "unsupported file type" in errors[2]
    assert "not a readable PDF" in errors[3]
    assert added[4].error is None and index.find_url(file_url(tmp_path / "good.txt")) is not None


ROUTES: dict[str, tuple[str, bytes]] = {
    "/page": ("text/html; charset=utf-8", PAGE.encode()),
    "/notes.txt": ("text/plain", b"plain notes about quinces"),
    "/paper": ("application/pdf", pdf("A paper on quinces.")),
    "/picture": ("image/png", b"\x89PNG"),
}


class Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        route = ROUTES.get(self.path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", route[0])
        self.send_header("Content-Length", str(len(route[1])))
        self.end_headers()
        self.wfile.write(route[1])

    def log_message(self, *_args: object) -> None:
        """Quiet: no request lines on stderr."""


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urls_are_fetched_and_indexed(index: LocalIndex, site: str) -> None:
    sources = [f"{site}/page", f"{site}/notes.txt", f"{site}/paper"]
    added = list(add_sources(index, sources, workspace="team", policy=LOCAL))
    assert [(a.url, a.title, a.error) for a in added] == [
        (f"{site}/page", "Tide pools & rocks", None),
        (f"{site}/notes.txt", "notes.txt", None),
        (f"{site}/paper", "paper", None),
    ]
    assert set(urls(index, "quinces", workspace="team")) == {f"{site}/notes.txt", f"{site}/paper"}
    assert [d.url for d in matching(index, f"{site}/page")] == [f"{site}/page"]


def test_urls_that_cannot_be_indexed_say_why(index: LocalIndex, site: str) -> None:
    added = list(add_sources(index, [f"{site}/picture", f"{site}/missing"], workspace=None, policy=LOCAL))
    assert "unsupported content type image/png" in (added[0].error or "")
    assert "404" in (added[1].error or "")
    # Loopback is refused unless the policy opens it.
    [refused] = list(add_sources(index, [f"{site}/page"], workspace=None, policy=FetchPolicy()))
    assert "loopback" in (refused.error or "")
    assert index.documents() == []
