#!/usr/bin/env python3
"""Register an XMPP account with an invite URI (XEP-0401/XEP-0445), stdlib only.

usage: register.py [--port N] [--server 127.0.0.1] 'xmpp:HOST?register;preauth=TOKEN' USER PASSWORD

Opens a stream to HOST on SERVER:PORT, upgrades with STARTTLS when offered (the
certificate is not verified: this is for local test servers), sends the preauth token,
registers USER with PASSWORD, then logs in with SASL PLAIN to prove the account works.
The client is the repository's raw XMPP stream (tools/harness/xmpp.py).
"""
import argparse
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.xmpp import (NS_IBR_TOKEN, NS_TLS, RawStream, Refused, StreamClosed,  # noqa: E402
                          q)


def error_text(reply) -> str:
    err = reply.error()
    if err is None:
        return str(reply)
    return f"{err.type}/{err.condition or '?'} {err.text or ''}".strip()


def connect(server: str, port: int, host: str) -> RawStream:
    """An open stream to `host`, upgraded with STARTTLS when the server offers it."""
    stream = RawStream(port, to=host, timeout=10, address=server)
    features = stream.open()
    if features.el.find(q(NS_TLS, "starttls")) is not None:
        stream.starttls()
    return stream


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

    try:
        with connect(args.server, args.port, host) as stream:
            if stream.features.el.find(q(NS_IBR_TOKEN, "register")) is None:
                print(f"warning: the server does not advertise {NS_IBR_TOKEN}", file=sys.stderr)
            reply = stream.preauth(token, iq_id="preauth1")
            if reply.type != "result":
                sys.exit(f"invite refused: {error_text(reply)}")
            reply = stream.register(args.username, args.password, iq_id="reg1")
            if reply.type != "result":
                sys.exit(f"registration refused: {error_text(reply)}")
        print(f"registered {args.username}@{host}")

        with connect(args.server, args.port, host) as stream:
            try:
                stream.auth_plain(args.username, args.password)
            except Refused:
                sys.exit("login failed after registration")
        print(f"logged in as {args.username}@{host}")
    except (Refused, StreamClosed, TimeoutError, OSError) as e:
        sys.exit(f"{args.server}:{args.port}: {e}")


if __name__ == "__main__":
    main()
