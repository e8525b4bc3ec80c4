"""Images and documents a request carries: decoded, checked against the Claude API's limits, fetched
safely when given by URL, and turned into the RGB bitmaps the engines read.

    images.py   image bytes → `Bitmap` (formats, size and count limits, the API's downscaling)
    fetch.py    `url` sources → bytes, never from an address the operator has not opened
    pdf.py      PDF bytes → each page's text and, when asked, a `Bitmap` of each page

Decoding and rendering block (run them on a worker thread); fetching is async. A client's mistake
is raised as `InvalidRequestError` whose message starts with the field path: a function takes
`field`, the path of the content block (`messages.0.content.1`), and appends the part it rejects
(`.source.data`, `.source.media_type`, `.source.url`); `images.py` names its two exceptions.
"""
