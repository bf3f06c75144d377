#!/usr/bin/env python3
"""Register an XMPP account with an invite URI (XEP-0401/XEP-0445), stdlib only.

usage: register.py [--port N] [--server 127.0.0.1] 'xmpp:HOST?register;preauth=TOKEN' USER PASSWORD

Opens a stream to HOST on SERVER:PORT, upgrades with STARTTLS when offered (the
certificate is not verified: this is for local test servers), sends the preauth token,
registers USER with PASSWORD, then logs in with SASL PLAIN to prove the account works.
"""
import argparse
import base64
import socket
import ssl
import sys
import urllib.parse
import xml.etree.ElementTree as ET

STREAM = "http://etherx.jabber.org/streams"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Stream:
    def __init__(self, sock, host):
        self.sock, self.host = sock, host

    def open(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  f"xmlns:stream='{STREAM}' to='{self.host}' version='1.0'>")
        return self.next_element()  # <stream:features>

    def send(self, data):
        self.sock.sendall(data.encode())

    def next_element(self):
        while True:
            for event, elem in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        return elem
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the stream")
            self.parser.feed(chunk)


def error_text(elem):
    err = elem.find("{jabber:client}error")
    if err is None:
        return ET.tostring(elem, encoding="unicode")
    cond = [c.tag.split("}")[1] for c in err if c.tag.startswith("{" + STANZAS) and not c.tag.endswith("text")]
    text = err.findtext(f"{{{STANZAS}}}text") or ""
    return f"{err.get('type')}/{cond[0] if cond else '?'} {text}".strip()


def connect(server, port, host):
    sock = socket.create_connection((server, port), timeout=10)
    stream = Stream(sock, host)
    features = stream.open()
    if features.find(f"{{{TLS}}}starttls") is not None:
        stream.send(f"<starttls xmlns='{TLS}'/>")
        stream.next_element()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        stream.sock = ctx.wrap_socket(sock, server_hostname=host)
        features = stream.open()
    return stream, features


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("uri")
    ap.add_argument("username")
    ap.add_argument("password")
    args = ap.parse_args()

    uri = urllib.parse.urlsplit(args.uri)
    host = uri.path.split("@")[-1]
    params = dict(p.split("=", 1) for p in uri.query.split(";") if "=" in p)
    token = params.get("preauth")
    if uri.scheme != "xmpp" or not token:
        sys.exit(f"not an invite URI: {args.uri}")

    stream, features = connect(args.server, args.port, host)
    if features.find("{urn:xmpp:ibr-token:0}register") is None:
        print("warning: the server does not advertise urn:xmpp:ibr-token:0", file=sys.stderr)
    stream.send(f"<iq type='set' id='preauth1'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></iq>")
    reply = stream.next_element()
    if reply.get("type") != "result":
        sys.exit(f"invite refused: {error_text(reply)}")
    user = ET.Element("username")
    user.text = args.username
    password = ET.Element("password")
    password.text = args.password
    stream.send("<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>"
                + ET.tostring(user, encoding="unicode") + ET.tostring(password, encoding="unicode")
                + "</query></iq>")
    reply = stream.next_element()
    if reply.get("type") != "result":
        sys.exit(f"registration refused: {error_text(reply)}")
    print(f"registered {args.username}@{host}")

    stream, features = connect(args.server, args.port, host)
    auth = base64.b64encode(f"\0{args.username}\0{args.password}".encode()).decode()
    stream.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{auth}</auth>")
    reply = stream.next_element()
    if not reply.tag.endswith("success"):
        sys.exit("login failed after registration")
    print(f"logged in as {args.username}@{host}")


if __name__ == "__main__":
    main()
