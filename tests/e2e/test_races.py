"""Races at scale (SPEC §4.3 step 3, §4.4): 20 raw streams use one invite as
simultaneously as a client can — a barrier releases 20 threads that each write their
prepared registration in one `sendall`. A single-use token makes exactly one account
whatever the interleaving; a reusable one serves all 20."""

from __future__ import annotations

import threading

import client
import invites
import storage
from expect import INVITE_ONLY, TOKEN_INVALID, TOKEN_USED, assert_error, assert_result
from xmpp_raw import NS_PREAUTH, NS_REGISTER, RawStream, Stanza, q

STREAMS = 20
TIMEOUT = 30.0


def open_streams(server, n: int = STREAMS) -> list[RawStream]:
    streams = [RawStream(server.port, timeout=TIMEOUT) for _ in range(n)]
    for s in streams:
        s.open()
    return streams


def close_all(streams) -> None:
    for s in streams:
        s.close()


def preauth_xml(token: str, iq_id: str) -> str:
    return f"<iq type='set' id='{iq_id}'><preauth xmlns='{NS_PREAUTH}' token='{token}'/></iq>"


def register_xml(username: str, iq_id: str) -> str:
    return (f"<iq type='set' id='{iq_id}'><query xmlns='{NS_REGISTER}'>"
            f"<username>{username}</username><password>secret</password></query></iq>")


def all_at_once(streams: list[RawStream], payloads: list[str],
                reply_ids: list[list[str]]) -> list[list[Stanza]]:
    """Release all streams at once: each writes its payload in one call, then collects
    the replies with the given ids (in that order)."""
    barrier = threading.Barrier(len(streams))
    results: list[list[Stanza] | BaseException | None] = [None] * len(streams)

    def worker(i: int) -> None:
        s = streams[i]
        data = payloads[i].encode()
        try:
            barrier.wait(timeout=TIMEOUT)
            s.sock.sendall(data)
            results[i] = [s.wait_for(lambda st, rid=rid: st.tag == q("jabber:client", "iq")
                                     and st.id == rid, TIMEOUT) for rid in reply_ids[i]]
        except BaseException as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 10)
    for i, r in enumerate(results):
        assert isinstance(r, list), f"stream {i}: {r!r}"
    return results  # type: ignore[return-value]


def test_single_use_token_twenty_streams(server):
    """20 streams preauth the same single-use token (all accepted: preauth does not
    consume), then all register at once with different names: exactly one account,
    19 refusals modify/not-acceptable "The invite token is no longer valid"; the token
    is gone and the winner logs in."""
    token = invites.account(server)
    streams = open_streams(server)
    try:
        for s in streams:
            assert_result(s.preauth(token))
        replies = all_at_once(streams,
                              [register_xml(f"racer{i}", f"reg{i}") for i in range(STREAMS)],
                              [[f"reg{i}"] for i in range(STREAMS)])
    finally:
        close_all(streams)
    winners = [i for i, (r,) in enumerate(replies) if r.type == "result"]
    assert len(winners) == 1, [str(r) for (r,) in replies]
    for i, (r,) in enumerate(replies):
        if i not in winners:
            assert_error(r, "modify", "not-acceptable", TOKEN_USED)
    assert storage.accounts(server) == {f"racer{winners[0]}"}
    assert storage.invite_gone(server, token)
    assert client.login(server.port, f"racer{winners[0]}", "secret")


def test_single_use_token_pipelined_preauth_and_register(server):
    """Each of 20 fresh streams sends preauth + registration in one write, all at once:
    some preauths may now arrive after the token was used. Exactly one account; every
    other stream got either (result, token no longer valid) or (item-not-found,
    invitation only)."""
    token = invites.account(server)
    streams = open_streams(server)
    try:
        replies = all_at_once(
            streams,
            [preauth_xml(token, f"pre{i}") + register_xml(f"runner{i}", f"reg{i}")
             for i in range(STREAMS)],
            [[f"pre{i}", f"reg{i}"] for i in range(STREAMS)])
    finally:
        close_all(streams)
    winners = [i for i, (_, reg) in enumerate(replies) if reg.type == "result"]
    assert len(winners) == 1, [(str(p), str(r)) for p, r in replies]
    late = 0
    for i, (pre, reg) in enumerate(replies):
        if i in winners:
            assert_result(pre)
        elif pre.type == "result":
            assert_error(reg, "modify", "not-acceptable", TOKEN_USED)
        else:
            late += 1
            assert_error(pre, "cancel", "item-not-found", TOKEN_INVALID)
            assert_error(reg, "modify", "not-acceptable", INVITE_ONLY)
    print(f"\npipelined race: winner stream {winners[0]}, {late} preauths after the token "
          f"was used, {STREAMS - 1 - late} refused at registration")
    assert storage.accounts(server) == {f"runner{winners[0]}"}
    assert storage.invite_gone(server, token)


def test_reusable_invite_serves_twenty_at_once(server):
    """A reusable invite (group invite with a ttl) preauthed on 20 streams and used by
    all of them at once: 20 accounts, the token stays."""
    token = invites.reusable(server)
    streams = open_streams(server)
    try:
        for s in streams:
            assert_result(s.preauth(token))
        replies = all_at_once(streams,
                              [register_xml(f"member{i}", f"reg{i}") for i in range(STREAMS)],
                              [[f"reg{i}"] for i in range(STREAMS)])
    finally:
        close_all(streams)
    for (r,) in replies:
        assert_result(r)
    assert storage.accounts(server) == {f"member{i}" for i in range(STREAMS)}
    assert storage.invite_stored(server, token)
    assert client.login(server.port, "member0", "secret")
    assert client.login(server.port, f"member{STREAMS - 1}", "secret")
