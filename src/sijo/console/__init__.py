"""The Console: the web pages `sijo serve` serves at /console, for the people who run it.

    sessions.py   sessions held in memory, and their CSRF tokens
    access.py     who may use a page (an admin key's session, or loopback while no key exists),
                  and the CSRF check of forms and of the Workbench's requests
    pages.py      rendering: templates, the security headers every page carries, form bodies
    routes.py     the pages: sign-in, overview, API keys and workspaces, usage, batches, audit log
    usage.py      the usage page as values: buckets, kinds, groups, Claude API prices, bar geometry
    workbench.py  the Workbench page and the stream it runs (static/workbench.js draws it)

Server-rendered (Jinja) with the Console's own small script and style sheet, served from
`static/`; nothing is loaded from anywhere else, and the content security policy says so.
"""
