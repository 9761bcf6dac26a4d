"""Reaching the server through a proxy, with blocking sockets.

``open_proxy_socket()`` returns a socket tunnelled to the WebSocket server:

* HTTP proxy (``http://``, or ``https://`` with TLS to the proxy): a
  ``CONNECT`` request (``ws13.proxy`` makes the bytes and reads the answer);
* SOCKS proxy (``socks5h://``, ``socks5://``, ``socks4a://``, ``socks4://``):
  python-socks' blocking client (the ``ws13[proxy]`` extra).

For ``wss://`` through an ``https://`` proxy the TLS session to the server
runs inside the TLS session to the proxy: ``TLSInTLS`` is the socket-like
object that does it (``ssl.SSLSocket`` can't wrap another ``SSLSocket``).
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..exceptions import InvalidProxyMessage, ProxyError
from ..proxy import Proxy, parse_connect_response, prepare_connect_request
from ..uri import WebSocketURI

__all__ = ["TLSInTLS", "open_proxy_socket"]

T = TypeVar("T")

#: Bytes read per ``recv()`` from the proxy.
RECV_BUFSIZE = 2**16


def open_proxy_socket(
    proxy: Proxy,
    uri: WebSocketURI,
    remaining: Callable[[], float | None],
    *,
    user_agent_header: str | None,
    proxy_ssl: ssl_module.SSLContext | None,
    proxy_server_hostname: str | None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """A socket tunnelled through ``proxy`` to ``uri``'s host and port.

    ``remaining()`` gives the seconds left of the open timeout (raising
    TimeoutError once none are). Raises InvalidProxyStatus (the proxy's
    status line) or InvalidProxyMessage for a bad answer to ``CONNECT``,
    ProxyError for a SOCKS failure, ImportError without python-socks,
    OSError when the proxy can't be reached.
    """
    if proxy.is_socks:
        if proxy_ssl is not None:
            raise ValueError("proxy_ssl is for an https:// proxy, not a SOCKS one")
        return _socks(proxy, uri, remaining, source_address)
    if proxy.scheme != "https" and proxy_ssl is not None:
        raise ValueError("proxy_ssl is for an https:// proxy, not an http:// one")
    sock = socket.create_connection(
        (proxy.host, proxy.port), timeout=remaining(), source_address=source_address
    )
    try:
        if proxy.scheme == "https":
            context = proxy_ssl or ssl_module.create_default_context()
            sock.settimeout(remaining())
            sock = context.wrap_socket(sock, server_hostname=proxy_server_hostname or proxy.host)
        sock.sendall(prepare_connect_request(proxy, uri, user_agent_header))
        buffer = bytearray()
        while True:
            sock.settimeout(remaining())
            data = sock.recv(RECV_BUFSIZE)
            buffer += data
            parsed = parse_connect_response(buffer, eof=not data)
            if parsed is not None:
                break
        if len(buffer) > parsed[1]:
            # The server speaks only once it got the handshake request (or,
            # for wss://, the TLS hello): these bytes can't come from it.
            raise InvalidProxyMessage("proxy sent data after its answer to CONNECT")
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


def _socks(
    proxy: Proxy,
    uri: WebSocketURI,
    remaining: Callable[[], float | None],
    source_address: tuple[str, int] | None,
) -> socket.socket:
    try:
        from python_socks import ProxyError as SocksError
        from python_socks import ProxyType
        from python_socks.sync import Proxy as SocksProxy
    except ImportError:
        raise ImportError(
            f"a SOCKS proxy ({proxy}) needs python-socks: pip install 'ws13[proxy]'"
        ) from None
    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    # socks5h and socks4a: the proxy resolves the server's name.
    rdns = proxy.scheme in ("socks5h", "socks4a")
    client = SocksProxy(kind, proxy.host, proxy.port, proxy.username, proxy.password, rdns)
    kwargs: dict[str, Any] = {}
    if source_address is not None:
        kwargs["local_addr"] = source_address
    try:
        sock = client.connect(uri.host, uri.port, timeout=remaining(), **kwargs)
    except SocksError as exc:
        # python-socks' "connection refused by the proxy" and the like.
        raise ProxyError(f"SOCKS proxy {proxy} refused the connection: {exc}") from exc
    sock.settimeout(None)
    return sock


class TLSInTLS:
    """A socket-like TLS session over another TLS socket (``wss://`` via ``https://``).

    It has what ``Connection`` uses of a socket: ``recv()``, ``sendall()``,
    ``shutdown()``, ``close()``, ``settimeout()``; everything else (addresses,
    ``family``, ``setsockopt()``) is the outer socket's. A lock guards the
    ``SSLObject`` (OpenSSL's objects aren't for concurrent use) and the
    queue of records it made; another keeps those records in order on the
    outer socket, so one thread may read while others write, as with a
    plain socket.
    """

    def __init__(
        self, sock: socket.socket, context: ssl_module.SSLContext, server_hostname: str | None
    ) -> None:
        self._sock = sock
        self._incoming = ssl_module.MemoryBIO()
        self._outgoing = ssl_module.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        # TLS records made and not sent yet, in order.
        self._records: list[bytes] = []
        self._run(self._object.do_handshake)

    def _run(self, operation: Callable[..., T], *args: Any, reading: bool = False) -> T:
        """Run an SSLObject operation, moving bytes to and from the outer socket."""
        while True:
            with self._lock:
                try:
                    return_value = operation(*args)
                    wants_read = False
                except ssl_module.SSLWantReadError:
                    wants_read = True
                pending = self._outgoing.read()
                if pending:
                    self._records.append(pending)
            if pending:
                # The reading thread doesn't wait for a writer blocked by a
                # peer that doesn't read: that writer sends these records too.
                self._send_records(wait=not reading)
            if not wants_read:
                return return_value
            data = self._sock.recv(RECV_BUFSIZE)
            with self._lock:
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()

    def _send_records(self, *, wait: bool) -> None:
        """Send the queued TLS records, in order, unless another thread does."""
        if not self._write_lock.acquire(blocking=wait):
            return
        released = False
        try:
            while True:
                with self._lock:
                    if not self._records:
                        # Released with the queue seen empty, atomically: a
                        # thread that queues after this finds the lock free.
                        self._write_lock.release()
                        released = True
                        return
                    chunk = b"".join(self._records)
                    self._records.clear()
                self._sock.sendall(chunk)
        finally:
            if not released:
                self._write_lock.release()

    def recv(self, bufsize: int) -> bytes:
        try:
            return self._run(self._object.read, bufsize, reading=True)
        except (ssl_module.SSLZeroReturnError, ssl_module.SSLEOFError):
            return b""

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = self._run(self._object.write, view)
            view = view[sent:]

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
