"""HTTP front of the simulated floor: one exporter endpoint per node, one meter per site.

    GET /nodes/<host>/metrics      the node's exporter text at clock(): dcgm-exporter,
                                   or the AMD / Ascend exporter for those clusters
    GET /facility/<site>/metrics   the site's DCIM meters
    GET /                          the target URLs, one a line

During a node's exporter outage the endpoint fails the way real ones do, the
same way for the whole outage (chosen per outage by the floor): "hang" accepts
the request, says nothing for `hang_s` and closes the socket, so a scraper
meets its own timeout; "503" answers at once with a short error body. A hang
waits on the server's stop event, so `stop()` never waits out a hang.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from simulator.model import ExporterDown, Floor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# what each exporter answers while its device layer is down
_DOWN_BODY = {
    "dcgm": "failed to collect metrics: DCGM host engine not responding\n",
    "amd": "failed to collect metrics: gpuagent connection refused\n",
    "ascend": "failed to collect metrics: dcmi get card list failed\n",
}


@dataclass(frozen=True)
class Target:
    """One scrape endpoint the simulator serves."""

    name: str
    url: str
    kind: str               # "dcgm", "amd", "ascend" or "facility"
    site: str
    cluster: str | None
    host: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, addr, handler, owner: "SimulatorServer"):
        self.owner = owner
        self._live: set[threading.Thread] = set()
        self._live_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        t = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        with self._live_lock:
            self._live.add(t)
        t.start()

    def _run(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._live_lock:
                self._live.discard(threading.current_thread())

    def live_threads(self) -> list[threading.Thread]:
        with self._live_lock:
            return list(self._live)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "dcgm-exporter-sim/1.0"

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass

    def _send(self, code: int, body: str, ctype: str = CONTENT_TYPE) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - name fixed by the base class
        owner = self.server.owner
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        try:
            if not parts:
                self._send(200, "".join(t.url + "\n" for t in owner.targets()), "text/plain; charset=utf-8")
            elif len(parts) == 3 and parts[0] == "nodes" and parts[2] == "metrics" and parts[1] in owner.host_set:
                self._node(parts[1])
            elif (len(parts) == 3 and parts[0] == "facility" and parts[2] == "metrics"
                  and parts[1] in owner.floor.sites):
                self._send(200, owner.floor.facility_text(parts[1], owner.clock()))
            else:
                self._send(404, "404 page not found\n", "text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _node(self, host: str) -> None:
        owner = self.server.owner
        try:
            text = owner.floor.node_text(host, owner.clock())
        except ExporterDown as down:
            self.close_connection = True
            if down.mode == "hang":
                owner.hanging.set()
                owner.stopping.wait(owner.hang_s)
                return
            self._send(503, _DOWN_BODY.get(owner.host_kind.get(host, "dcgm"), _DOWN_BODY["dcgm"]),
                       "text/plain; charset=utf-8")
            return
        self._send(200, text)


class SimulatorServer:
    """Serves a Floor over HTTP on its own thread; `stop()` is idempotent and joins everything."""

    def __init__(self, floor: Floor, *, bind: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.time, hang_s: float = 8.0):
        self.floor = floor
        self.bind = bind
        self.port = port
        self.clock = clock
        self.hang_s = hang_s
        self.host_set = frozenset(h.host for h in floor.hosts)
        self.host_kind = {h.host: h.kind for h in floor.hosts}
        self.stopping = threading.Event()
        self.hanging = threading.Event()        # set when a request starts hanging (tests wait on it)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> None:
        if self._httpd is not None:
            return
        self.stopping.clear()
        self._httpd = _Server((self.bind, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://{self.bind}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"simulator-http-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._httpd = None
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for t in httpd.live_threads():
            t.join(5)

    def __enter__(self) -> "SimulatorServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def targets(self) -> list[Target]:
        out = [Target(name=h.host, url=f"{self.base_url}/nodes/{h.host}/metrics", kind=h.kind, site=h.site,
                      cluster=h.cluster, host=h.host) for h in self.floor.hosts]
        out += [Target(name=f"facility-{s}", url=f"{self.base_url}/facility/{s}/metrics", kind="facility", site=s,
                       cluster=None, host=None) for s in self.floor.sites]
        return out
