"""Scrape targets and the HTTP fetch every exporter collector shares.

`fetch` is the one place that talks HTTP: it returns the body as text or
raises `ScrapeError` with the failure in words an operator can act on
("no answer within 5 s", "HTTP 503 ...", "connection closed mid-response").
Collectors take a fetch function in their constructor so tests inject fakes.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

MAX_BODY_BYTES = 256 * 1024 * 1024


class ScrapeError(Exception):
    """A target could not be scraped; the message is shown on the sources page."""

    def __init__(self, message: str, *, timeout: bool = False):
        super().__init__(message)
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
    req = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read(MAX_BODY_BYTES + 1)
            declared = resp.headers.get("Content-Length")
            # read(n) returns short data, not an error, when the peer closes early
            if declared and declared.isdigit() and len(body) < int(declared) <= MAX_BODY_BYTES:
                raise ScrapeError(f"connection closed mid-response after {len(body)} of {declared} bytes")
    except urllib.error.HTTPError as exc:
        raise ScrapeError(f"HTTP {exc.code} {exc.reason}") from None
    except (TimeoutError, socket.timeout):
        raise ScrapeError(f"no answer within {timeout:g} s", timeout=True) from None
    except http.client.IncompleteRead as exc:
        raise ScrapeError(f"connection closed mid-response after {len(exc.partial)} bytes") from None
    except http.client.RemoteDisconnected:
        raise ScrapeError("connection closed before any response") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise ScrapeError(f"no answer within {timeout:g} s", timeout=True) from None
        if isinstance(reason, ConnectionRefusedError):
            raise ScrapeError("connection refused (is the exporter running?)") from None
        raise ScrapeError(f"cannot reach target: {reason}") from None
    except (ConnectionError, OSError) as exc:
        raise ScrapeError(f"connection failed: {exc}") from None
    if len(body) > MAX_BODY_BYTES:
        raise ScrapeError(f"response larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    return body.decode("utf-8", errors="replace")
