"""Raw client-to-server XMPP over a plain socket (optionally STARTTLS), stdlib only.

Two ways to talk to a server, sharing one set of wire builders:

- `RawStream`: a blocking stream driven by hand, for edge cases a client library won't
  send. It reads stream features, sends hand-written stanzas and waits for replies by id.
  Incoming data goes through expat with namespace processing; every top-level element is
  kept both as an ElementTree element and as the exact bytes the server sent, so tests
  can compare replies byte for byte.
- `take_iq` / `iq_attrs` / `after_features`: a byte scanner for load loops (bench/bench.py)
  that must not become the bottleneck: replies are found by scanning, not parsed.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_REGISTER = "jabber:iq:register"
NS_PREAUTH = "urn:xmpp:pars:0"
NS_INVITE = "urn:xmpp:invite"
NS_IBR_TOKEN = "urn:xmpp:ibr-token:0"

DEFAULT_TIMEOUT = 5.0


def q(ns: str, name: str) -> str:
    """Clark notation {ns}name, as ElementTree uses."""
    return f"{{{ns}}}{name}"


def xml_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


# -- wire builders (strings as sent) -------------------------------------------

STREAM_CLOSE = "</stream:stream>"


def stream_header(to: str) -> str:
    """The opening of a client stream to host `to`."""
    return ("<?xml version='1.0'?>"
            f"<stream:stream to='{xml_escape(to)}' xmlns='{NS_CLIENT}' "
            f"xmlns:stream='{NS_STREAM}' version='1.0' xml:lang='en'>")


def preauth_iq(iq_id: str, token: str | None, iq_type: str = "set", to: str | None = None) -> str:
    """A XEP-0401/0445 preauth IQ (token None: no token attribute)."""
    to_attr = f" to='{xml_escape(to)}'" if to else ""
    token_attr = f" token='{xml_escape(token)}'" if token is not None else ""
    return (f"<iq type='{iq_type}' id='{iq_id}'{to_attr}>"
            f"<preauth xmlns='{NS_PREAUTH}'{token_attr}/></iq>")


def register_iq(iq_id: str, username: str, password: str) -> str:
    """A XEP-0077 registration set with the legacy username/password fields."""
    return (f"<iq type='set' id='{iq_id}'><query xmlns='{NS_REGISTER}'>"
            f"<username>{xml_escape(username)}</username>"
            f"<password>{xml_escape(password)}</password></query></iq>")


def sasl_plain(username: str, password: str) -> str:
    """A SASL PLAIN <auth/> for `username` with `password`."""
    payload = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>"


# -- reply scanning for load loops (bytes in, bytes out; no XML parser) --------

_FEATURES_ENDS = (b"</stream:features>", b"<stream:features/>")
_ATTR_RE = re.compile(rb"""\s(type|id)=['"]([^'"]*)['"]""")


def after_features(buf: bytes) -> int:
    """The index just past the stream features in `buf`, or -1 while they are incomplete."""
    for end in _FEATURES_ENDS:
        i = buf.find(end)
        if i >= 0:
            return i + len(end)
    return -1


def take_iq(buf: bytes) -> tuple[bytes | None, bytes]:
    """(the first complete <iq> element in `buf`, what follows it), or (None, buf)."""
    start = buf.find(b"<iq")
    if start < 0:
        return None, buf
    tag_end = buf.find(b">", start)
    if tag_end < 0:
        return None, buf
    if buf[tag_end - 1:tag_end] == b"/":
        end = tag_end + 1
    else:
        close = buf.find(b"</iq>", tag_end)
        if close < 0:
            return None, buf
        end = close + 5
    return buf[start:end], buf[end:]


def iq_attrs(iq: bytes) -> dict[bytes, bytes]:
    """The `id` and `type` attributes of a scanned <iq> (from its start tag)."""
    return dict(_ATTR_RE.findall(iq[:iq.find(b">") + 1]))


def stream_ended(buf: bytes) -> bool:
    """True when `buf` holds a stream error or the end of the stream."""
    return b"<stream:error" in buf or b"</stream:stream>" in buf


def answers_streams(port: int, to: str, address: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True once a server on `port` answers a stream to `to` with its features.

    A listening port is not enough: the c2s port starts listening while hosts are still
    loading, and the kernel accepts connections before the event loop runs; only a reply
    proves that startup (every host and module) is complete.
    """
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.sendall(stream_header(to).encode())
            received = b""
            while after_features(received) < 0:
                data = s.recv(65536)
                if not data:
                    return False
                received += data
            s.sendall(STREAM_CLOSE.encode())
            return True
    except OSError:
        return False


# -- a stream driven by hand ---------------------------------------------------

class StreamClosed(Exception):
    """The server closed the stream (or the connection) before the expected reply."""


class Refused(AssertionError):
    """The server refused a step the stream needs (STARTTLS, SASL, bind). An
    AssertionError, so that pytest reports it as a failed expectation; raised explicitly,
    so that it also holds under `python3 -O`."""


@dataclass
class StanzaError:
    type: str | None
    condition: str | None
    text: str | None


@dataclass
class Stanza:
    """One top-level element received on the stream."""

    el: ET.Element
    raw: bytes

    @property
    def tag(self) -> str:
        return self.el.tag

    @property
    def attrs(self) -> dict[str, str]:
        return dict(self.el.attrib)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.el.get(name, default)

    @property
    def type(self) -> str | None:
        return self.el.get("type")

    @property
    def id(self) -> str | None:
        return self.el.get("id")

    def error(self) -> StanzaError | None:
        err = self.el.find(q(NS_CLIENT, "error"))
        if err is None:
            return None
        condition = text = None
        for child in err:
            if child.tag == q(NS_STANZAS, "text"):
                text = child.text or ""
            elif child.tag.startswith("{" + NS_STANZAS + "}"):
                condition = child.tag.split("}", 1)[1]
        return StanzaError(err.get("type"), condition, text)

    def error_payload(self) -> bytes:
        """The raw bytes of the <error> element inside this stanza."""
        start = self.raw.find(b"<error")
        end = self.raw.find(b"</error>")
        if start < 0:
            return b""
        if end < 0:
            return self.raw[start:self.raw.find(b"/>", start) + 2]
        return self.raw[start:end + len(b"</error>")]

    def __str__(self) -> str:
        return self.raw.decode(errors="replace")


class _StreamReader:
    """Incremental parser for one XML stream: yields complete top-level children."""

    def __init__(self):
        self.parser = expat.ParserCreate(namespace_separator="}")
        self.parser.buffer_text = True
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.raw = bytearray()
        self.depth = 0
        self.builder: ET.TreeBuilder | None = None
        self.start_index = 0
        self.empty = True
        self.stream_attrs: dict[str, str] | None = None
        self.closed = False
        self.ready: list[Stanza] = []

    @staticmethod
    def _clark(name: str) -> str:
        return "{" + name if "}" in name else name

    def _start(self, name, attrs):
        if self.depth == 0:
            self.stream_attrs = {self._clark(k): v for k, v in attrs.items()}
        else:
            if self.depth == 1:
                self.builder = ET.TreeBuilder()
                self.start_index = self.parser.CurrentByteIndex
                self.empty = True
            else:
                self.empty = False
            self.builder.start(self._clark(name), {self._clark(k): v for k, v in attrs.items()})
        self.depth += 1

    def _end(self, name):
        self.depth -= 1
        if self.depth == 0:
            self.closed = True
            return
        self.builder.end(self._clark(name))
        if self.depth == 1:
            # expat's CurrentByteIndex points at "</name>" for an element with
            # content, but just past "/>" for a self-closing one.
            index = self.parser.CurrentByteIndex
            if self.empty and self.raw[self.start_index:index].endswith(b"/>"):
                end = index
            else:
                end = self.raw.index(b">", index) + 1
            self.ready.append(Stanza(self.builder.close(), bytes(self.raw[self.start_index:end])))
            self.builder = None

    def _text(self, data):
        if self.builder is not None:
            self.empty = False
            self.builder.data(data)

    def feed(self, data: bytes) -> None:
        self.raw += data
        self.parser.Parse(data, False)


class RawStream:
    """A client-to-server stream driven by hand.

    >>> with RawStream(port) as s:
    ...     features = s.open()
    ...     reply = s.iq("<iq type='set' id='p1'><preauth xmlns='urn:xmpp:pars:0' token='T'/></iq>")
    """

    def __init__(self, port: int, to: str = "example.test", timeout: float = DEFAULT_TIMEOUT,
                 source: str | None = None, address: str = "127.0.0.1"):
        self.port = port
        self.to = to
        self.timeout = timeout
        # `source`: connect from another loopback address (e.g. "127.0.0.2"), which the
        # server sees as another client IP (session.ip).
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (address, port), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.reader = _StreamReader()
        self.features: Stanza | None = None
        self.pending: list[Stanza] = []
        self._ids = 0

    def __enter__(self) -> "RawStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------

    def send(self, data: str) -> None:
        self.sock.sendall(data.encode())

    def _read_more(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no reply from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("no reply from the server in time") from e
        if not data:
            raise StreamClosed("connection closed by the server")
        self.reader.feed(data)
        self.pending += self.reader.ready
        self.reader.ready = []

    def wait_for(self, match, timeout: float | None = None) -> Stanza:
        """Return (and remove) the first received top-level element that `match` accepts."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, stanza in enumerate(self.pending):
                if match(stanza):
                    return self.pending.pop(i)
            if self.reader.closed:
                raise StreamClosed("stream closed by the server; unmatched: "
                                   + " ".join(str(s) for s in self.pending))
            try:
                self._read_more(deadline)
            except TimeoutError as e:
                raise TimeoutError("no matching reply from the server in time; unmatched: "
                                   + " ".join(str(s) for s in self.pending)) from e

    def next_id(self, prefix: str = "e2e") -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    # -- stream ------------------------------------------------------------

    def open(self) -> Stanza:
        """Open the stream and return its <stream:features/>."""
        self.send(stream_header(self.to))
        self.features = self.wait_for(lambda s: s.tag == q(NS_STREAM, "features"))
        return self.features

    def feature_namespaces(self) -> list[tuple[str, str]]:
        """The advertised features as (namespace, name), in order."""
        assert self.features is not None, "stream not opened"
        result = []
        for child in self.features.el:
            ns, _, name = child.tag[1:].partition("}")
            result.append((ns, name))
        return result

    def starttls(self) -> Stanza:
        """Negotiate STARTTLS (certificate not verified), reopen the stream, return new features."""
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        reply = self.wait_for(lambda s: s.tag.startswith("{" + NS_TLS + "}"))
        if reply.tag != q(NS_TLS, "proceed"):
            raise Refused(f"STARTTLS refused: {reply}")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.to)
        self.reader = _StreamReader()
        self.pending = []
        return self.open()

    def auth_plain(self, username: str, password: str) -> Stanza:
        """SASL PLAIN, then restart the stream; returns the post-login features."""
        self.send(sasl_plain(username, password))
        reply = self.wait_for(lambda s: s.tag.startswith("{" + NS_SASL + "}"))
        if reply.tag != q(NS_SASL, "success"):
            raise Refused(f"SASL failed: {reply}")
        self.reader = _StreamReader()
        self.pending = []
        return self.open()

    def bind(self, resource: str = "e2e") -> str:
        """Bind a resource after auth_plain(); returns the full JID."""
        reply = self.iq(f"<iq type='set' id='{self.next_id('bind')}'>"
                        f"<bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>")
        if reply.type != "result":
            raise Refused(f"bind failed: {reply}")
        return reply.el.findtext(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}")

    def login(self, username: str, password: str) -> str:
        """Open the stream, authenticate with PLAIN and bind; returns the full JID."""
        self.open()
        self.auth_plain(username, password)
        return self.bind()

    def close(self) -> None:
        try:
            self.sock.sendall(STREAM_CLOSE.encode())
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    # -- stanzas -------------------------------------------------------

    def iq(self, xml: str, timeout: float | None = None) -> Stanza:
        """Send an IQ and wait for the reply carrying the same id."""
        iq_id = ET.fromstring(xml).get("id")
        assert iq_id, "raw IQ needs an id"
        self.send(xml)
        return self.wait_for(
            lambda s: s.tag == q(NS_CLIENT, "iq") and s.id == iq_id
            and s.type in ("result", "error"), timeout)

    def preauth(self, token: str | None, iq_type: str = "set", to: str | None = None,
                iq_id: str | None = None) -> Stanza:
        """Send a XEP-0401/0445 preauth IQ (token None → no token attribute)."""
        return self.iq(preauth_iq(iq_id or self.next_id("preauth"), token, iq_type, to))

    def register(self, username: str, password: str, iq_id: str | None = None) -> Stanza:
        """XEP-0077 registration set with the legacy username/password fields."""
        return self.iq(register_iq(iq_id or self.next_id("reg"), username, password))

    def register_form(self) -> Stanza:
        """XEP-0077 registration get."""
        iq_id = self.next_id("regget")
        return self.iq(f"<iq type='get' id='{iq_id}'><query xmlns='{NS_REGISTER}'/></iq>")
