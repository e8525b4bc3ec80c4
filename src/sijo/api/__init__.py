"""The HTTP edge: routes, body parsing, auth, SSE framing and error rendering. No pipeline logic here."""
