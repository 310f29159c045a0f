"""The web inbox's HTML pages, built from :mod:`mta.testing.web.view` data.

Everything that comes from a message is escaped (:func:`html.escape`, quotes
included); the pages carry no inline script or style, so the strict
Content-Security-Policy of :mod:`mta.testing.web.app` holds.  A message's HTML
part is never put in these pages: it is shown in a sandboxed ``<iframe>`` (no
``allow-scripts``, no ``allow-same-origin``) from its own address, which has a
policy of its own (:data:`PART_POLICY`).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from mta.testing.web.view import Detail, Summary

__all__ = ["PAGE_POLICY", "PART_POLICY", "inbox_page", "message_page", "not_found_page"]

# The pages: their own script, style and API only; frames only from here.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# A message's HTML part: sandboxed even when opened directly, no script, no
# fetches (no remote images: nothing tells a sender the message was read).
PART_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def _page(title: str, body: str, *, script: bool = False) -> str:
    js = '<script src="/static/inbox.js" defer></script>' if script else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/static/inbox.css">'
        f"{js}</head>\n<body>\n{body}\n</body></html>\n"
    )


def message_href(message_id: str) -> str:
    return f"/messages/{quote(message_id, safe='')}"


def _row(s: Summary) -> str:
    sender = s["from"] or s["mail_from"] or "<>"
    return (
        f'<tr data-id="{escape(s["id"])}">'
        f"<td>{escape(sender)}</td>"
        f"<td>{escape(', '.join(s['rcpt_tos']))}</td>"
        f'<td><a href="{escape(message_href(s["id"]))}">{escape(s["subject"]) or "(no subject)"}'
        "</a></td>"
        f"<td>{escape(s['date'] or s['received'])}</td></tr>"
    )


def count_text(kept: int, dropped: int) -> str:
    """``3 messages``, and how many older ones a bounded inbox dropped
    (the same words as ``/static/inbox.js``)."""
    text = f"{kept} message{'s' if kept != 1 else ''}"
    return f"{text} ({dropped} older dropped)" if dropped else text


def inbox_page(summaries: list[Summary], dropped: int = 0) -> str:
    """The list, newest first (``summaries`` as given), and how many older
    messages the inbox dropped; the script keeps it live."""
    rows = "\n".join(_row(s) for s in summaries)
    body = (
        '<header><h1>mta inbox</h1> <span id="count">'
        f"{count_text(len(summaries), dropped)}</span></header>\n"
        '<table id="messages"><thead><tr><th>From</th><th>To</th><th>Subject</th>'
        f"<th>Date</th></tr></thead>\n<tbody>{rows}</tbody></table>"
    )
    return _page("mta inbox", body, script=True)


def message_page(d: Detail) -> str:
    """One message: the envelope, its headers, its text and HTML parts (the
    latter in a sandboxed frame), its attachments, a link to the raw source."""
    href = message_href(d["id"])
    headers = "\n".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in d["headers"]
    )
    parts = []
    if d["text"] is not None:
        parts.append(f'<h2>Text</h2>\n<pre id="text">{escape(d["text"])}</pre>')
    if d["html"] is not None:
        parts.append(
            '<h2>HTML</h2>\n<iframe id="html" sandbox="" referrerpolicy="no-referrer" '
            f'src="{escape(href)}/html" title="the HTML part"></iframe>'
        )
    if d["attachments"]:
        items = "\n".join(
            f"<li>{escape(a['filename'] or '(unnamed)')} "
            f"<span>{escape(a['content_type'])}, {a['size']} bytes</span></li>"
            for a in d["attachments"]
        )
        parts.append(f'<h2>Attachments</h2>\n<ul id="attachments">{items}</ul>')
    envelope = (
        f"<p class=envelope>Envelope: from &lt;{escape(d['mail_from'])}&gt; to "
        f"{escape(', '.join(f'<{r}>' for r in d['rcpt_tos']))}, received "
        f"{escape(d['received'])}, {d['size']} bytes</p>"
    )
    body = (
        f'<nav><a href="/">inbox</a> · <a href="/api/messages/{escape(quote(d["id"], safe=""))}'
        f'/raw">raw source</a></nav>\n'
        f"<h1>{escape(d['subject']) or '(no subject)'}</h1>\n{envelope}\n"
        f'<table id="headers">{headers}</table>\n' + "\n".join(parts)
    )
    return _page(d["subject"] or "(no subject)", body)


def not_found_page(what: str) -> str:
    return _page("not found", f'<nav><a href="/">inbox</a></nav><p>{escape(what)}</p>')
