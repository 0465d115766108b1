"""Scrape targets and the HTTP fetch every exporter collector shares.

`fetch` is the one place that talks HTTP: it returns the body as text or
raises `ScrapeError` with the failure in words an operator can act on
("no answer within 5 s", "HTTP 503 ...", "connection closed mid-response").
Collectors take a fetch function in their constructor so tests inject fakes.

We ask for no compression, but a proxy or an exporter may compress anyway: a body
that says `Content-Encoding: gzip` is decompressed (bounded like any body); gzip
bytes that do not say so, or another encoding, are reported as such rather than
parsed as garbage.
"""

from __future__ import annotations

import http.client
import socket
import zlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

from i18n import Msg, msg

MAX_BODY_BYTES = 256 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


class ScrapeError(Exception):
    """A target could not be scraped; the message is shown on the sources page.

    Give it an `i18n.Msg` (key and parameters, stored as such and shown in the
    reader's language); `str()` of the error is the English text."""

    def __init__(self, message: "Msg | str", *, timeout: bool = False):
        super().__init__(str(message))
        self.msg: Msg | str = message
        self.timeout = timeout      # the target did not answer in time (not retried within a cycle)


@dataclass(frozen=True)
class Target:
    url: str
    source: str                 # configured source name
    kind: str                   # dcgm | facility
    site: str
    cluster: str | None = None
    host: str | None = None     # the node this endpoint describes, if known

    def as_row(self) -> dict:
        return {"target": self.url, "source": self.source, "kind": self.kind,
                "site": self.site, "cluster": self.cluster, "host": self.host}


Fetch = Callable[[str, float], str]


def fetch(url: str, timeout: float) -> str:
    """GET url with a timeout on connect and on every read; return the decoded body."""
    req = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read(MAX_BODY_BYTES + 1)
            encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
            declared = resp.headers.get("Content-Length")
            # read(n) returns short data, not an error, when the peer closes early
            if declared and declared.isdigit() and len(body) < int(declared) <= MAX_BODY_BYTES:
                raise ScrapeError(msg("msg.closed_mid_declared", got=len(body), declared=declared))
    except urllib.error.HTTPError as exc:
        raise ScrapeError(msg("msg.http_status", code=exc.code, reason=str(exc.reason))) from None
    except (TimeoutError, socket.timeout):
        raise ScrapeError(msg("msg.timeout", s=f"{timeout:g}"), timeout=True) from None
    except http.client.IncompleteRead as exc:
        raise ScrapeError(msg("msg.closed_mid", got=len(exc.partial))) from None
    except http.client.RemoteDisconnected:
        raise ScrapeError(msg("msg.closed_before")) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise ScrapeError(msg("msg.timeout", s=f"{timeout:g}"), timeout=True) from None
        if isinstance(reason, ConnectionRefusedError):
            raise ScrapeError(msg("msg.refused")) from None
        raise ScrapeError(msg("msg.unreachable", reason=str(reason))) from None
    except (ConnectionError, OSError) as exc:
        raise ScrapeError(msg("msg.connection_failed", detail=str(exc))) from None
    if len(body) > MAX_BODY_BYTES:
        raise ScrapeError(msg("msg.too_large", mib=MAX_BODY_BYTES // (1024 * 1024)))
    if encoding in ("gzip", "x-gzip"):
        body = gunzip(body)
    elif encoding != "identity":
        raise ScrapeError(msg("msg.encoding_unknown", encoding=encoding))
    elif body.startswith(GZIP_MAGIC):
        raise ScrapeError(msg("msg.gzip_unannounced"))
    return body.decode("utf-8", errors="replace")


def gunzip(body: bytes) -> bytes:
    """A gzip body, decompressed to at most MAX_BODY_BYTES (a small bomb cannot fill memory)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise ScrapeError(msg("msg.gzip_broken", detail=str(exc))) from None
    if len(out) > MAX_BODY_BYTES:
        raise ScrapeError(msg("msg.too_large", mib=MAX_BODY_BYTES // (1024 * 1024)))
    if not d.eof:
        raise ScrapeError(msg("msg.gzip_broken", detail="the compressed data ends early"))
    return out
