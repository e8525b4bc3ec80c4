"""allowed_domains and blocked_domains: the entries the API accepts (hosts, subdomains, paths, no
scheme), the 400 naming the field otherwise, and URL matching (subdomains in, look-alikes out)."""

from __future__ import annotations

import pytest

from sijo.errors import InvalidRequestError
from sijo.tools.web_search import check_domains, url_allowed


@pytest.mark.parametrize(
    "entries",
    [
        ["example.com"],
        ["docs.example.com", "EXAMPLE.org."],
        ["example.com/blog", "example.com/blog/2025/"],
        ["*.example.com"],
        ["bücher.de", "xn--bcher-kva.de"],
        ["intranet", "10.0.0.1", "my_host.example.com"],
        [],
    ],
)
def test_accepted_entries(entries: list[str]) -> None:
    check_domains(entries, None, "tools.0")
    check_domains(None, entries, "tools.0")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("https://example.com", "must not include a scheme"),
        ("http://example.com/blog", "must not include a scheme"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("example.com:8080", "is not a domain"),
        ("exa mple.com", "is not a domain"),
        ("user@example.com", "is not a domain"),
        ("example.com?q=1", "is not a domain"),
        ("-bad-.com", "is not a domain"),
        ("a..b", "is not a domain"),
        ("/blog", "is not a domain"),
        ("*", "is not a domain"),
        ("x" * 300 + ".com", "is not a domain"),
    ],
)
def test_refused_entries_name_the_field(entry: str, reason: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_domains(["fine.com", entry], None, "tools.2")
    assert caught.value.message.startswith("tools.2.allowed_domains.1: ")
    assert reason in caught.value.message
    with pytest.raises(InvalidRequestError, match=r"^tools\.0\.blocked_domains\.0: "):
        check_domains(None, [entry], "tools.0")


def test_a_long_entry_is_shown_cut() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_domains(["https://" + "a" * 5000], None, "tools.0")
    assert len(caught.value.message) < 400


def test_both_lists_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match=r"^tools\.1\.allowed_domains: cannot be used together"):
        check_domains(["a.com"], ["b.com"], "tools.1")
    # An empty list is no filter: nothing is used together.
    check_domains(["a.com"], [], "tools.1")
    check_domains(None, None, "tools.1")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com/", True),
        ("https://example.com", True),
        ("http://docs.example.com/guide", True),
        ("https://a.b.example.com/x", True),
        ("https://EXAMPLE.COM./page", True),
        ("https://example.com:8443/page", True),
        ("https://badexample.com/", False),
        ("https://example.com.evil.net/", False),
        ("https://example.org/", False),
        ("file:///home/me/example.com", False),
        ("not a url", False),
    ],
)
def test_a_domain_covers_its_subdomains_only(url: str, allowed: bool) -> None:
    assert url_allowed(url, ("example.com",), ()) is allowed
    assert url_allowed(url, (), ("example.com",)) is not allowed


def test_a_subdomain_entry_covers_that_subdomain() -> None:
    assert url_allowed("https://docs.example.com/a", ("docs.example.com",), ())
    assert url_allowed("https://v2.docs.example.com/a", ("docs.example.com",), ())
    assert not url_allowed("https://example.com/a", ("docs.example.com",), ())
    assert not url_allowed("https://www.example.com/a", ("docs.example.com",), ())


def test_a_path_entry_covers_what_starts_with_it() -> None:
    allowed = ("example.com/blog",)
    assert url_allowed("https://example.com/blog", allowed, ())
    assert url_allowed("https://example.com/blog/post-1", allowed, ())
    assert url_allowed("https://www.example.com/blog/post-1?x=1", allowed, ())
    assert not url_allowed("https://example.com/", allowed, ())
    assert not url_allowed("https://example.com/about/blog", allowed, ())
    # Blocking a path leaves the rest of the site.
    assert not url_allowed("https://example.com/blog/post-1", (), allowed)
    assert url_allowed("https://example.com/shop", (), allowed)


def test_wildcard_entries_cover_subdomains_alone() -> None:
    assert url_allowed("https://docs.example.com/", ("*.example.com",), ())
    assert not url_allowed("https://example.com/", ("*.example.com",), ())


def test_international_names_match_in_either_form() -> None:
    assert url_allowed("https://xn--bcher-kva.de/buch", ("bücher.de",), ())
    assert url_allowed("https://bücher.de/buch", ("xn--bcher-kva.de",), ())


def test_no_filter_allows_everything() -> None:
    assert url_allowed("https://anything.example/", (), ())
    assert url_allowed("file:///tmp/notes.txt", (), ())


def test_any_allowed_entry_is_enough() -> None:
    allowed = ("a.com", "b.org/docs")
    assert url_allowed("https://x.a.com/", allowed, ())
    assert url_allowed("https://b.org/docs/1", allowed, ())
    assert not url_allowed("https://b.org/", allowed, ())
