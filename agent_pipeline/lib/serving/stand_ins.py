"""Stand-in agents: a real HTTP server on 127.0.0.1 that answers like an agent, or misbehaves on cue.

Used by the chaos gate (``lib/evaluation/chaos.py``) and the dispatcher tests. One
``ThreadingHTTPServer`` in a daemon thread serves every agent at ``/agents/<name>``; each
request is handled in its own thread, so a stalled request does not hold up the others.

What a request gets is decided by ``faults`` (``request_id`` -> kind, fixed before the run, so a
seeded schedule gives the same run every time); requests not listed are answered normally:

=============  =================================================================================
kind           behaviour
=============  =================================================================================
``stall``      sleeps ``stall_s`` (bounded) before a normal reply: only a timeout saves the caller
``reset``      closes the connection with a TCP reset (SO_LINGER 0) without replying
``garbage``    200 with bytes that are not JSON
``http_500``   500 with a JSON error body
=============  =================================================================================

A normal reply is ``{"agent": <name>, "answer": "<name> handled: <text[:60]>", "request_id": ...}``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STAND_IN_FAULTS = ("stall", "reset", "garbage", "http_500")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        agent = self.path.rstrip("/").rsplit("/", 1)[-1]
        request_id = str(body.get("request_id", ""))
        fault = self.server.faults.get(request_id, "") if agent != self.server.healthy_agent else ""
        with self.server.lock:
            self.server.calls.append((request_id, agent, fault))
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if fault == "stall":
            time.sleep(self.server.stall_s)
        if fault == "garbage":
            self._send(200, b"\x00\xffnot json at all {", "application/octet-stream")
            return
        if fault == "http_500":
            self._send(500, b'{"error": "internal error"}', "application/json")
            return
        reply = {
            "agent": agent,
            "answer": f"{agent} handled: {str(body.get('text', ''))[:60]}",
            "request_id": request_id,
        }
        self._send(200, json.dumps(reply).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, faults: Mapping[str, str], stall_s: float, healthy_agent: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.faults = dict(faults)
        self.stall_s = stall_s
        self.healthy_agent = healthy_agent
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, str]] = []

    def handle_error(self, request, client_address) -> None:
        pass  # a caller that timed out and hung up on a stalled request: expected, not news


class StandInAgents:
    """``with StandInAgents(faults, stall_s=1.0) as agents: agents.url("banking")``.

    ``healthy_agent`` (the fallback) never misbehaves, whatever ``faults`` says.
    """

    def __init__(
        self, faults: Mapping[str, str] | None = None, *, stall_s: float = 1.0, healthy_agent: str = "general"
    ):
        unknown = sorted(set((faults or {}).values()) - set(STAND_IN_FAULTS))
        if unknown:
            raise ValueError(f"unknown stand-in fault(s) {unknown}; use {', '.join(STAND_IN_FAULTS)}")
        if not 0 < stall_s <= 10:
            raise ValueError(f"stall_s must be in (0, 10] seconds, got {stall_s}")
        self._server = _Server(faults or {}, stall_s, healthy_agent)
        self._thread = threading.Thread(target=self._server.serve_forever, name="stand-in-agents", daemon=True)

    def __enter__(self) -> StandInAgents:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, agent: str) -> str:
        return f"http://127.0.0.1:{self.port}/agents/{agent}"

    @property
    def calls(self) -> list[tuple[str, str, str]]:
        """``(request_id, agent, fault)`` of every request received, in arrival order."""
        with self._server.lock:
            return list(self._server.calls)
