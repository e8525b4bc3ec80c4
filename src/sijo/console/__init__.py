"""The Console: the web pages `sijo serve` serves at /console, for the people who run it.

    sessions.py   who is signed in (an admin key, or loopback when no key exists), CSRF tokens
    pages.py      rendering: templates, the security headers every page carries, form bodies
    routes.py     the pages: sign-in, overview, API keys and workspaces

Server-rendered (Jinja) with the Console's own small script and style sheet, served from
`static/`; nothing is loaded from anywhere else, and the content security policy says so.
"""
