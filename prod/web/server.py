"""The browser caller's page, served over HTTPS by the edge itself, and its WebTransport twin.

Theory of operation
-------------------
:class:`WebCaller` binds one port number twice: TCP for HTTPS (the page: static files shipped
in the package under ``prod/web/static``, no build step, no CDN) and UDP for HTTP/3
WebTransport (:class:`~clutchcall.prod.ingress.webtransport.WebTransportIngress`, the MoQT
session at ``/moq``). Both use the edge's certificate, so an HTTP/3 server looks like any
other: ``https://HOST:PORT/`` for the page, ``https://HOST:PORT/moq`` for the session.

:meth:`WebCaller.page_url` returns the URL a person opens. Everything the page needs rides
in the URL *fragment* (never sent to a server, so it stays out of logs): the call id, its
token and, with the self-signed development certificate, the certificate's SHA-256, which the
page hands to ``new WebTransport(url, {serverCertificateHashes})`` so Chromium accepts the
session without a CA (the certificate is ECDSA P-256 and valid for at most 14 days, see
:mod:`clutchcall.prod.ingress.tls`). With a real certificate (``--cert/--key``) no hash is
passed. The page itself, over HTTPS with the self-signed certificate, needs a one-time click
through the browser's warning; the same page is also served over plain HTTP on
``http_port`` when :attr:`loopback_http` is set (loopback only: ``http://127.0.0.1`` is a
secure context, so getUserMedia, WebCodecs and WebTransport work without any warning).

The HTTP server is deliberately small: HTTP/1.1, ``GET``/``HEAD`` of the files in the static
folder (a fixed allow-list built at start, so no path ever reaches the file system from the
request), one request per connection; anything else gets 404 / 405 / 400. Counters are in
:attr:`WebCaller.stats`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import socket
import ssl
import urllib.parse
from collections import Counter
from pathlib import Path

log = logging.getLogger("clutchcall.web")

STATIC_DIR = Path(__file__).with_name("static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json"}
_MAX_REQUEST_BYTES = 8192
_BIND_TRIES = 32


def static_files(root: Path = STATIC_DIR) -> dict[str, tuple[bytes, str]]:
    """Return the page's files: URL path -> (content, content type); ``/`` is index.html."""
    files: dict[str, tuple[bytes, str]] = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix in _TYPES:
            files["/" + p.name] = (p.read_bytes(), _TYPES[p.suffix])
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    return files


def page_url(host: str, port: int, *, call_id: str, token: str, cert_hash: bytes | None,
             http_port: int | None = None) -> str:
    """Return the browser caller's URL: the page on ``https://host:port/`` (or, with
    ``http_port``, its loopback ``http://host:http_port/`` twin), the call id, token,
    WebTransport port and (self-signed certificate) its SHA-256 in the fragment."""
    frag = {"call": call_id, "token": token, "port": str(port)}
    if cert_hash is not None:
        frag["hash"] = base64.urlsafe_b64encode(cert_hash).decode().rstrip("=")
    h = f"[{host}]" if ":" in host else host
    base = f"http://{h}:{http_port}/" if http_port is not None else f"https://{h}:{port}/"
    return base + "#" + urllib.parse.urlencode(frag)


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Return (TCP listening socket, UDP socket) bound to the same ``port`` on ``host``
    (``port`` 0: a free number both can use). Raises OSError if that cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for _ in range(_BIND_TRIES if port == 0 else 1):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, port))
            tcp.listen(128)
            got = tcp.getsockname()[1]
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp.bind((host, got))
            except OSError:
                udp.close()
                raise
        except OSError as exc:
            tcp.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        tcp.setblocking(False)
        udp.setblocking(False)
        return tcp, udp
    raise last or OSError(errno.EADDRINUSE, "no port free for both TCP and UDP")


class WebCaller:
    """The page over HTTPS plus the WebTransport ingress on the same port number."""

    def __init__(self, *, host: str, port: int, cert: str, key: str, cert_hash: bytes | None,
                 ingress_factory: object, loopback_http: bool = False) -> None:
        """``ingress_factory(sock) -> WebTransportIngress`` builds the ingress on the UDP socket;
        ``cert_hash``: SHA-256 of a self-signed certificate to put in the page URL (None for a
        real certificate)."""
        self.host, self.cert, self.key, self.cert_hash = host, cert, key, cert_hash
        self._want_port = port
        self._factory = ingress_factory
        self.loopback_http = loopback_http
        self.files = static_files()
        self.stats: Counter[str] = Counter()
        self.port = 0
        self.http_port = 0
        self.ingress: object = None
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self) -> int:
        """Bind, start the HTTPS server and the WebTransport ingress; return the port."""
        tcp, udp = bind_pair(self.host, self._want_port)
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.cert, self.key)
            ctx.set_alpn_protocols(["http/1.1"])
            self._servers.append(await asyncio.start_server(self._serve, sock=tcp, ssl=ctx))
            self.ingress = self._factory(udp)  # type: ignore[operator]
            await self.ingress.start()  # type: ignore[attr-defined]
        except BaseException:
            tcp.close()
            udp.close()
            await self.stop()
            raise
        self.port = int(tcp.getsockname()[1])
        if self.loopback_http:
            srv = await asyncio.start_server(self._serve, self.host, 0)
            self._servers.append(srv)
            self.http_port = int(srv.sockets[0].getsockname()[1])
        log.info("web caller page on https://%s:%d/ (WebTransport /moq on UDP %d)", self.host, self.port, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop the HTTP servers (the ingress is stopped by its owner). Idempotent."""
        for srv in self._servers:
            srv.close()
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        self._servers = []

    def page_url(self, call_id: str, token: str, *, plain_http: bool = False) -> str:
        """Return the URL to open for ``call_id``: the page, with the call id, its token and
        (self-signed certificate) the certificate hash in the fragment. ``plain_http``: the
        loopback ``http://`` twin of the page (needs ``loopback_http``); the WebTransport
        session still goes to the HTTPS port."""
        return page_url(self.host, self.port, call_id=call_id, token=token, cert_hash=self.cert_hash,
                        http_port=self.http_port if plain_http else None)

    # ---------------------------------------------------------------- HTTP/1.1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError,
                ssl.SSLError, OSError):
            self.stats["http_bad_requests"] += 1
            writer.close()
            return
        try:
            status, body, ctype, method = self._respond(head)
            self.stats[f"http_{status}"] += 1
            headers = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
                       "Cache-Control: no-store", "X-Content-Type-Options: nosniff",
                       "Referrer-Policy: no-referrer", "Connection: close", "", ""]
            writer.write("\r\n".join(headers).encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[str, bytes, str, str]:
        if len(head) > _MAX_REQUEST_BYTES:
            return "431 Request Header Fields Too Large", b"", "text/plain", ""
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return "400 Bad Request", b"bad request\n", "text/plain", ""
        if not version.startswith("HTTP/1."):
            return "505 HTTP Version Not Supported", b"", "text/plain", method
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"", "text/plain", method
        path = urllib.parse.urlsplit(target).path
        found = self.files.get(path)
        if found is None:
            return "404 Not Found", b"not found\n", "text/plain", method
        return "200 OK", found[0], found[1], method
