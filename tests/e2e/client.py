"""A real XMPP client (slixmpp) against the private Prosody.

`login()` proves an account exists with a given password (SASL SCRAM, then
resource binding). `register_with_invite()` does what an invite-aware client
does: IBR get, XEP-0401/0445 preauth (sent raw: slixmpp queues ordinary IQs
until the session starts), IBR set, then logs in with the new account on the
same connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from xmpp_raw import NS_PREAUTH, xml_escape

CLIENT_TIMEOUT = 10.0

# slixmpp logs connection errors at ERROR level; keep the test output readable.
logging.getLogger("slixmpp").setLevel(logging.CRITICAL)


def _client(jid: str, password: str, tls: bool) -> slixmpp.ClientXMPP:
    # SCRAM (and PLAIN) over plaintext are fine on loopback; the server allows them too.
    xmpp = slixmpp.ClientXMPP(jid, password, plugin_config={
        "feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}})
    # Loopback server: plaintext unless the test asks for STARTTLS.
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = tls
    xmpp.enable_plaintext = not tls
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    return xmpp


async def _session(port: int, jid: str, password: str, tls: bool, action=None):
    """Log in; return (True, action result) once the session started, (False, None) if not."""
    xmpp = _client(jid, password, tls)
    outcome: asyncio.Future = asyncio.get_running_loop().create_future()

    def settle(value: bool):
        if not outcome.done():
            outcome.set_result(value)

    xmpp.add_event_handler("session_start", lambda _: settle(True))
    xmpp.add_event_handler("failed_all_auth", lambda _: settle(False))
    xmpp.add_event_handler("disconnected", lambda _: settle(False))
    xmpp.connect("127.0.0.1", port)
    try:
        started = await asyncio.wait_for(outcome, CLIENT_TIMEOUT)
        if not started or action is None:
            return started, None
        return True, await asyncio.wait_for(action(xmpp), CLIENT_TIMEOUT)
    finally:
        await _disconnect(xmpp)


async def _disconnect(xmpp: slixmpp.ClientXMPP) -> None:
    try:
        await asyncio.wait_for(xmpp.disconnect(wait=1.0), 3)
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort cleanup
        xmpp.abort()


def login(port: int, username: str, password: str, host: str = "example.test",
          tls: bool = False) -> bool:
    """True when `username@host` can authenticate with `password` and bind a session."""
    started, _ = asyncio.run(_session(port, f"{username}@{host}", password, tls))
    return started


def roster(port: int, username: str, password: str,
           host: str = "example.test") -> dict[str, dict[str, str]]:
    """Log in and fetch the roster: {contact bare JID: {"subscription": ..., "ask": ...}}."""

    async def fetch(xmpp):
        iq = xmpp.Iq()
        iq["type"] = "get"
        iq.enable("roster")
        reply = await iq.send(timeout=CLIENT_TIMEOUT)
        return {str(jid): {"subscription": item["subscription"], "ask": item["ask"]}
                for jid, item in reply["roster"]["items"].items()}

    started, items = asyncio.run(_session(port, f"{username}@{host}", password, False, fetch))
    assert started, f"{username}@{host} could not log in"
    return items


@dataclass
class Registration:
    """What happened during an invite registration with slixmpp."""

    preauth_type: str | None = None
    preauth_condition: str | None = None
    register_type: str | None = None
    register_condition: str | None = None
    register_text: str | None = None
    logged_in: bool = False


async def _register_with_invite(port: int, token: str, username: str, password: str,
                                host: str, tls: bool) -> Registration:
    xmpp = _client(f"{username}@{host}", password, tls)
    xmpp.register_plugin("xep_0077")
    result = Registration()
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def settle():
        if not done.done():
            done.set_result(None)

    async def on_register(_form):
        # The server answered our IBR get: present the invite, then register.
        preauth_id = xmpp.new_id()
        reply: asyncio.Future = loop.create_future()
        xmpp.register_handler(Callback(
            "preauth-reply", MatcherId(preauth_id),
            lambda stanza: reply.done() or reply.set_result(stanza), once=True))
        xmpp.send_raw(f"<iq type='set' id='{preauth_id}' to='{host}'>"
                      f"<preauth xmlns='{NS_PREAUTH}' token='{xml_escape(token)}'/></iq>")
        stanza = await asyncio.wait_for(reply, CLIENT_TIMEOUT)
        result.preauth_type = stanza["type"]
        if stanza["type"] == "error":
            result.preauth_condition = stanza["error"]["condition"]

        iq = xmpp.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = username
        iq["register"]["password"] = password
        try:
            await iq.send(timeout=CLIENT_TIMEOUT)
            result.register_type = "result"
        except slixmpp.exceptions.IqError as e:
            result.register_type = "error"
            result.register_condition = e.iq["error"]["condition"]
            result.register_text = e.iq["error"]["text"]
            settle()

    xmpp.add_event_handler("register", on_register)

    def logged_in(_):
        result.logged_in = True
        settle()

    xmpp.add_event_handler("session_start", logged_in)
    xmpp.add_event_handler("failed_all_auth", lambda _: settle())
    xmpp.add_event_handler("disconnected", lambda _: settle())
    xmpp.connect("127.0.0.1", port)
    try:
        await asyncio.wait_for(done, CLIENT_TIMEOUT)
    finally:
        await _disconnect(xmpp)
    return result


def register_with_invite(port: int, token: str, username: str, password: str,
                         host: str = "example.test", tls: bool = False) -> Registration:
    """Register `username` with an invite token the way an invite-aware client does."""
    return asyncio.run(_register_with_invite(port, token, username, password, host, tls))
