"""The part of the kubelet's API the API server proxies to: ``containerLogs``.

``kubectl logs`` (and ``kubectl bgjobs logs``) ask the API server for
``pods/{name}/log``; the API server calls the node at its InternalIP (127.0.0.1, preferred
by ``--kubelet-preferred-address-types``) on the port the node registered in
``status.daemonEndpoints.kubeletEndpoint``, over HTTPS. This serves the output the process
node keeps in ``<state>/pods/<namespace>/<pod>/<container>.log`` with ``tailLines``,
``limitBytes`` and ``follow`` (until the container ends). The API server's own serving
certificate stands in for the kubelet's (the API server does not verify it unless given
``--kubelet-certificate-authority``; the devcluster gives none).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


def tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class KubeletApi:
    def __init__(
        self, state_dir: Path, cert: Path, key: Path, running: Callable[[str, str], bool]
    ) -> None:
        """``running(namespace, pod)``: whether the node still runs the pod (for follow)."""
        self.state_dir = state_dir
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.running = running

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True, name="kubelet-api").start()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if len(parts) != 4 or parts[0] != "containerLogs":
            req.send_error(404, "the process node serves only /containerLogs/NS/POD/CONTAINER")
            return
        _, namespace, pod, container = parts
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        log = self.state_dir / "pods" / namespace / pod / f"{container}.log"
        if not log.exists():
            req.send_error(404, f'container "{container}" in pod "{pod}" has no output')
            return
        data = tail(log.read_bytes(), int(query.get("tailLines", -1)))
        limit = int(query.get("limitBytes", 0)) or None
        if limit is not None:
            data = data[:limit]
        follow = query.get("follow") in ("true", "1")
        req.send_response(200)
        req.send_header("Content-Type", "text/plain")
        if not follow:
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
            return
        req.send_header("Connection", "close")
        req.end_headers()
        req.wfile.write(data)
        req.wfile.flush()
        offset = log.stat().st_size
        try:
            while True:
                still_running = self.running(namespace, pod)
                size = log.stat().st_size if log.exists() else offset
                if size > offset:
                    with open(log, "rb") as f:
                        f.seek(offset)
                        chunk = f.read(size - offset)
                    offset = size
                    req.wfile.write(chunk)
                    req.wfile.flush()
                elif not still_running:
                    return
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            return

    def stop(self) -> None:
        self.server.shutdown()
