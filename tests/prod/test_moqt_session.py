"""MoQT session rules (sans-IO): setup first, request IDs, responses, aliases, data before setup."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.prod.moqt import session as s
from clutchcall.prod.moqt import wire as w
from clutchcall.prod.moqt.wire import MoqtError
from clutchcall.prod.moqt.wire import TerminationCode as TC

NS = (b"clutchcall", b"c1")


def pair() -> tuple[s.MoqtSession, s.MoqtSession]:
    cli, srv = s.MoqtSession("client"), s.MoqtSession("server")
    (ev,) = srv.receive_control(cli.client_setup())
    assert isinstance(ev, s.SetupReceived)
    (ev,) = cli.receive_control(srv.server_setup())
    assert isinstance(ev, s.SetupReceived) and cli.setup_done and srv.setup_done
    return cli, srv


def code(sess: s.MoqtSession, raw: bytes) -> TC:
    with pytest.raises(MoqtError) as ei:
        sess.receive_control(raw)
    assert sess.closed is not None
    return ei.value.code


def test_full_call_flow() -> None:
    cli, srv = pair()
    rid, raw = cli.publish_namespace(NS)
    (ev,) = srv.receive_control(raw)
    assert isinstance(ev, s.NamespacePublished) and ev.message.namespace == NS
    (ev,) = cli.receive_control(srv.publish_namespace_ok(rid))
    assert isinstance(ev, s.NamespaceAccepted)
    srid, raw = srv.subscribe(NS, b"caller-audio")
    assert srid == 1
    (ev,) = cli.receive_control(raw)
    alias, raw = cli.subscribe_ok(ev.message)
    (ev,) = srv.receive_control(raw)
    assert isinstance(ev, s.SubscribeAccepted)
    evs = srv.receive_data_stream(2, s.MoqtSession.encode_object_stream(alias, 7, b"frame"), fin=True)
    assert evs[0].object.group_id == 7 and evs[0].object.payload == b"frame"
    assert evs[0].request.track_name == b"caller-audio"
    (ev,) = srv.receive_control(cli.publish_done(srid, 2, "bye"))
    assert isinstance(ev, s.PublishDoneReceived)
    (ev,) = srv.receive_control(w.GoAway().encode())
    assert isinstance(ev, s.GoawayReceived)


def test_objects_before_subscribe_ok_are_held_then_released() -> None:
    cli, srv = pair()
    _, raw = srv.subscribe(NS, b"caller-audio")
    (ev,) = cli.receive_control(raw)
    alias, ok = cli.subscribe_ok(ev.message)
    assert srv.receive_data_stream(2, s.MoqtSession.encode_object_stream(alias, 1, b"early"), True) == []
    evs = srv.receive_control(ok)
    assert [type(e) for e in evs] == [s.SubscribeAccepted, s.ObjectReceived]


def test_pipelined_requests_after_client_setup() -> None:
    cli, srv = s.MoqtSession("client"), s.MoqtSession("server")
    raw = cli.client_setup() + cli.publish_namespace(NS)[1] + cli.subscribe(NS, b"agent-audio")[1]
    evs = srv.receive_control(raw)
    assert [type(e) for e in evs] == [s.SetupReceived, s.NamespacePublished, s.SubscribeReceived]


def test_violations_have_the_right_codes() -> None:
    setup = s.MoqtSession("client").client_setup()
    assert code(s.MoqtSession("server"), w.MaxRequestId(request_id=3).encode()) == TC.PROTOCOL_VIOLATION
    assert code(s.MoqtSession("server"), w.ServerSetup(version=w.MOQT_VERSION_14).encode()) == TC.PROTOCOL_VIOLATION
    assert code(s.MoqtSession("server"), w.ClientSetup(versions=(0xFF00000B,)).encode()) == \
        TC.VERSION_NEGOTIATION_FAILED
    srv = s.MoqtSession("server")
    srv.receive_control(setup)
    assert code(srv, setup) == TC.PROTOCOL_VIOLATION  # second setup
    cli, srv = pair()
    assert code(srv, w.Subscribe(request_id=2, namespace=NS, track_name=b"x").encode()) == TC.INVALID_REQUEST_ID
    cli, srv = pair()
    assert code(srv, w.Subscribe(request_id=1, namespace=NS, track_name=b"x").encode()) == TC.INVALID_REQUEST_ID
    cli, srv = pair()
    assert code(cli, w.SubscribeOk(request_id=0, track_alias=1).encode()) == TC.PROTOCOL_VIOLATION
    cli, srv = pair()
    srv.max_request_id_for_peer = 2
    srv.receive_control(w.Subscribe(request_id=0, namespace=NS, track_name=b"x").encode())
    assert code(srv, w.Subscribe(request_id=2, namespace=NS, track_name=b"y").encode()) == TC.TOO_MANY_REQUESTS
    cli, srv = pair()
    r1, _ = cli.subscribe(NS, b"a")
    r2, _ = cli.subscribe(NS, b"b")
    cli.receive_control(w.SubscribeOk(request_id=r1, track_alias=5).encode())
    assert code(cli, w.SubscribeOk(request_id=r2, track_alias=5).encode()) == TC.DUPLICATE_TRACK_ALIAS
    cli, srv = pair()
    with pytest.raises(MoqtError) as ei:
        srv.receive_control(b"", fin=True)
    assert ei.value.code == TC.PROTOCOL_VIOLATION
    srv = s.MoqtSession("server")
    with pytest.raises(MoqtError):
        srv.receive_data_stream(2, b"\x10\x00\x00\x80")
    cli, srv = pair()
    cli.receive_control(w.MaxRequestId(request_id=100).encode())
    assert code(cli, w.MaxRequestId(request_id=50).encode()) == TC.PROTOCOL_VIOLATION
    srv = s.MoqtSession("server")
    bad_path = w.ClientSetup(versions=(w.MOQT_VERSION_14,), params=w.params_from({1: b"nope"})).encode()
    assert code(srv, bad_path) == TC.MALFORMED_PATH


def test_oversized_object_closes() -> None:
    cli, srv = s.MoqtSession("client"), s.MoqtSession("server", max_object_bytes=100)
    srv.receive_control(cli.client_setup())
    with pytest.raises(MoqtError) as ei:
        srv.receive_data_stream(2, s.MoqtSession.encode_object_stream(0, 0, b"x" * 101), True)
    assert ei.value.code == TC.PROTOCOL_VIOLATION and srv.closed is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    w.ClientSetup(versions=(w.MOQT_VERSION_14,)).encode(),
    w.ServerSetup(version=w.MOQT_VERSION_14).encode(),
    w.Subscribe(request_id=0, namespace=NS, track_name=b"a").encode(),
    w.SubscribeOk(request_id=1, track_alias=0).encode(),
    w.SubscribeError(request_id=1, error_code=1).encode(),
    w.PublishNamespace(request_id=2, namespace=NS).encode(),
    w.PublishNamespaceOk(request_id=0).encode(),
    w.Unsubscribe(request_id=0).encode(),
    w.PublishDone(request_id=1, status_code=2).encode(),
    w.MaxRequestId(request_id=3).encode(),
    w.GoAway(new_session_uri=b"x").encode(),
    b"\x40\x99\x00\x00",
]), max_size=8), st.sampled_from(["client", "server"]))
def test_any_message_order_gives_events_or_typed_error(msgs, role) -> None:  # type: ignore[no-untyped-def]
    sess = s.MoqtSession(role)
    for m in msgs:
        try:
            sess.receive_control(m)
        except MoqtError as e:
            assert isinstance(e.code, TC)
            break


def _audio_subscription(srv: s.MoqtSession, cli: s.MoqtSession) -> tuple[int, int]:
    rid, raw = srv.subscribe(NS, b"caller-audio")
    (ev,) = cli.receive_control(raw)
    alias, ok = cli.subscribe_ok(ev.message)
    (ev,) = srv.receive_control(ok)
    assert isinstance(ev, s.SubscribeAccepted)
    return rid, alias


def test_receive_object_datagram_is_receive_datagrams_object() -> None:
    """The fast path returns what the general path's ObjectReceived carries, and counts it."""
    cli, srv = pair()
    rid, alias = _audio_subscription(srv, cli)
    for group in (0, 1, 63, 64, 70000):
        raw = w.ObjectDatagram(track_alias=alias, group_id=group, publisher_priority=0, payload=b"pcm",
                               end_of_group=True).encode()
        (ev,) = srv.receive_datagram(raw)
        before = srv.objects_received
        sub, g, payload = srv.receive_object_datagram(raw) or (None, None, None)
        assert sub is ev.request and sub is not None and sub.request_id == rid
        assert (g, payload) == (ev.object.group_id, ev.object.payload)
        assert srv.objects_received == before + 1


def test_receive_object_datagram_declines_what_the_general_path_decides() -> None:
    cli, srv = s.MoqtSession("client"), s.MoqtSession("server", max_object_bytes=8)
    raw = w.ObjectDatagram(track_alias=9, group_id=1, payload=b"x").encode()
    assert srv.receive_object_datagram(raw) is None  # before setup: receive_datagram raises
    with pytest.raises(MoqtError):
        srv.receive_datagram(raw)
    cli, srv = s.MoqtSession("client"), s.MoqtSession("server", max_object_bytes=8)
    srv.receive_control(cli.client_setup())
    cli.receive_control(srv.server_setup())
    assert srv.receive_object_datagram(raw) is None  # unknown alias: held by the general path
    assert srv.receive_datagram(raw) == [] and srv.objects_received == 0
    _, alias = _audio_subscription(srv, cli)
    assert alias != 9
    big = w.ObjectDatagram(track_alias=alias, group_id=1, payload=b"x" * 9).encode()
    assert srv.receive_object_datagram(big) is None  # oversized: the general path's error
    status = w.ObjectDatagram(track_alias=alias, group_id=1, status=w.ObjectStatus.END_OF_GROUP).encode()
    assert srv.receive_object_datagram(status) is None
    ext = w.ObjectDatagram(track_alias=alias, group_id=1, payload=b"x",
                           extensions=(w.Extension(type=2, value=5),)).encode()
    assert srv.receive_object_datagram(ext) is None
    with pytest.raises(MoqtError):
        srv.receive_datagram(big)
    assert srv.receive_object_datagram(raw) is None  # closed
