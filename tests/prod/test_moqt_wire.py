"""MoQT draft-14 wire codec: round trips, exact bytes, limits, fuzz (only typed errors)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutchcall.engine.errors import RemoteProtocolError
from clutchcall.prod.moqt import wire as w
from clutchcall.prod.moqt.wire import MoqtError
from clutchcall.prod.moqt.wire import TerminationCode as TC


def test_varint_sizes_and_roundtrip() -> None:
    for value, size in [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4), (2**30, 8), (2**62 - 1, 8)]:
        raw = w.encode_varint(value)
        assert len(raw) == size
        r = w.Reader(raw)
        assert r.varint() == value and r.remaining() == 0
    # RFC 9000 appendix A examples
    assert w.encode_varint(151288809941952652) == bytes.fromhex("c2197c5eff14e88c")
    assert w.encode_varint(494878333) == bytes.fromhex("9d7f3e7d")
    assert w.encode_varint(15293) == bytes.fromhex("7bbd")
    with pytest.raises(ValueError):
        w.encode_varint(2**62)


def test_control_framing_uses_16_bit_length() -> None:
    raw = w.MaxRequestId(request_id=5).encode()
    assert raw == bytes([0x15, 0x00, 0x01, 0x05])
    raw = w.ClientSetup(versions=(w.MOQT_VERSION_14,), params=w.params_from({0x02: 100})).encode()
    assert raw[0] == 0x20 and int.from_bytes(raw[1:3], "big") == len(raw) - 3


ALL_MESSAGES = [
    w.ClientSetup(
        versions=(w.MOQT_VERSION_14, 0xFF00000D),
        params=w.params_from({0x01: b"/call", 0x02: 64, 0x03: w.AuthToken(value=b"tok").encode(), 0x05: b"h:1"}),
    ),
    w.ServerSetup(version=w.MOQT_VERSION_14, params=w.params_from({0x02: 10})),
    w.GoAway(new_session_uri=b"moqt://other/"),
    w.MaxRequestId(request_id=1000),
    w.RequestsBlocked(maximum_request_id=7),
    w.Subscribe(request_id=2, namespace=(b"clutchcall", b"c1"), track_name=b"agent-audio"),
    w.Subscribe(
        request_id=4, namespace=(b"a",), track_name=b"t", filter_type=w.FilterType.ABSOLUTE_RANGE,
        start_group=3, start_object=1, end_group=9, params=w.params_from({0x02: 5000}),
    ),
    w.SubscribeOk(request_id=2, track_alias=0),
    w.SubscribeOk(request_id=2, track_alias=7, expires=9, content_exists=True, largest_group=4, largest_object=2),
    w.SubscribeError(request_id=2, error_code=4, reason="no such track"),
    w.Unsubscribe(request_id=2),
    w.PublishDone(request_id=2, status_code=2, stream_count=17, reason="track ended"),
    w.PublishNamespace(request_id=0, namespace=(b"clutchcall", b"c1"), params=w.params_from({0x1234567: b"x"})),
    w.PublishNamespaceOk(request_id=0),
    w.PublishNamespaceError(request_id=0, error_code=1, reason="unauthorized"),
    w.PublishNamespaceDone(namespace=(b"clutchcall", b"c1")),
]


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_control_roundtrip_whole_and_bytewise(msg: w.Message) -> None:
    raw = msg.encode()
    assert w.ControlStreamParser().feed(raw) == [msg]
    p = w.ControlStreamParser()
    got: list[w.Message] = []
    for i in range(len(raw)):
        got += p.feed(raw[i : i + 1])
    assert got == [msg] and p.buffered == 0


def test_many_messages_in_one_chunk() -> None:
    raw = b"".join(m.encode() for m in ALL_MESSAGES)
    assert w.ControlStreamParser().feed(raw) == ALL_MESSAGES


def test_matches_aiomoqt_encoding() -> None:
    """Same bytes as aiomoqt 0.5.3's own classes (an independent draft-14 implementation)."""
    from clutchcall.prod.quic.core import qh3_aiomoqt_shim

    qh3_aiomoqt_shim()  # aiomoqt 0.5.3 imports a qh3 1.x module that qh3 2.x no longer has
    am = pytest.importorskip("aiomoqt.messages")
    theirs = am.Subscribe(
        request_id=2, track_namespace=(b"clutchcall", b"c1"), track_name=b"agent-audio", priority=128,
        group_order=1, forward=1, filter_type=2, parameters={},
    ).serialize()
    mine = w.Subscribe(request_id=2, namespace=(b"clutchcall", b"c1"), track_name=b"agent-audio").encode()
    assert bytes(theirs.data) == mine
    theirs = am.PublishNamespace(request_id=0, namespace=(b"clutchcall", b"x"), parameters={}).serialize()
    assert bytes(theirs.data) == w.PublishNamespace(request_id=0, namespace=(b"clutchcall", b"x")).encode()
    hdr = am.SubgroupHeader(track_alias=3, group_id=41, subgroup_id_mode=0, end_of_group=True)
    theirs_stream = bytes(hdr.serialize().data) + bytes(hdr.next_object(payload=b"\x01\x02\x03").data)
    mine_stream = w.encode_subgroup_stream(
        w.SubgroupHeader(track_alias=3, group_id=41, end_of_group=True), [(0, b"\x01\x02\x03")]
    )
    assert theirs_stream == mine_stream
    dg = am.ObjectDatagram(track_alias=1, group_id=9, object_id=0, payload=b"abc")
    assert bytes(dg.serialize().data) == w.ObjectDatagram(track_alias=1, group_id=9, payload=b"abc").encode()


def code_of(raw: bytes) -> TC:
    with pytest.raises(MoqtError) as ei:
        w.ControlStreamParser().feed(raw)
    assert isinstance(ei.value, RemoteProtocolError)
    return ei.value.code


def test_malformed_control_messages_have_codes() -> None:
    # unknown type
    assert code_of(bytes([0x2F, 0, 0])) == TC.PROTOCOL_VIOLATION
    # truncated inside the declared length (length says 1, subscribe needs more)
    assert code_of(bytes([0x03, 0, 1, 0])) == TC.PROTOCOL_VIOLATION
    # trailing bytes after fields
    assert code_of(bytes([0x15, 0, 2, 5, 5])) == TC.PROTOCOL_VIOLATION
    # odd parameter longer than 65535
    body = w.encode_varint(w.MOQT_VERSION_14) + w.encode_varint(1) + w.encode_varint(3) + w.encode_varint(70000)
    assert code_of(bytes([0x21]) + len(body).to_bytes(2, "big") + body) == TC.KEY_VALUE_FORMATTING_ERROR
    # namespace with 0 fields
    body = bytes([0, 0])
    assert code_of(bytes([0x06]) + len(body).to_bytes(2, "big") + body) == TC.PROTOCOL_VIOLATION
    # 33 namespace fields
    body = bytes([0, 33]) + bytes([1, 0x61]) * 33 + bytes([0])
    assert code_of(bytes([0x06]) + len(body).to_bytes(2, "big") + body) == TC.PROTOCOL_VIOLATION
    # reason phrase not UTF-8
    body = bytes([1, 1, 2, 0xFF, 0xFE])
    assert code_of(bytes([0x05]) + len(body).to_bytes(2, "big") + body) == TC.PROTOCOL_VIOLATION


def test_partial_message_waits() -> None:
    raw = w.Subscribe(request_id=0, namespace=(b"a",), track_name=b"b").encode()
    p = w.ControlStreamParser()
    assert p.feed(raw[:-1]) == [] and p.buffered == len(raw) - 1
    assert len(p.feed(raw[-1:])) == 1


def test_subgroup_stream_roundtrip_all_header_types() -> None:
    for stype in sorted(w.SUBGROUP_TYPES):
        mode = (stype >> 1) & 3
        hdr = w.SubgroupHeader(
            track_alias=5, group_id=77, subgroup_id=3 if mode == 2 else 0, publisher_priority=9,
            extensions_present=bool(stype & 1), end_of_group=bool(stype & 8), subgroup_id_mode=mode,
        )
        assert hdr.type == stype
        exts = [(w.Extension(type=0x20, value=1234),), (), (w.Extension(type=0x21, value=b"x"),)]
        raw = w.encode_subgroup_stream(
            hdr, [(2, b"one"), (3, b"two"), (9, b"", w.ObjectStatus.END_OF_GROUP)],
            extensions=exts if hdr.extensions_present else None,
        )
        p = w.SubgroupStreamParser()
        objs = []
        for i in range(len(raw)):
            objs += p.feed(raw[i : i + 1], fin=(i == len(raw) - 1))
        assert [o.object_id for o in objs] == [2, 3, 9]
        assert [o.payload for o in objs] == [b"one", b"two", b""]
        assert objs[2].status == w.ObjectStatus.END_OF_GROUP
        assert all(o.group_id == 77 and o.publisher_priority == 9 for o in objs)
        expected_sub = {0: 0, 1: 2, 2: 3}[mode]
        assert all(o.subgroup_id == expected_sub for o in objs)
        if hdr.extensions_present:
            assert objs[0].extensions == exts[0]


def test_subgroup_stream_errors() -> None:
    hdr = w.SubgroupHeader(track_alias=1, group_id=1)
    raw = w.encode_subgroup_stream(hdr, [(0, b"x" * 100)])
    with pytest.raises(MoqtError) as ei:
        w.SubgroupStreamParser(max_object_bytes=50).feed(raw)
    assert ei.value.code == TC.PROTOCOL_VIOLATION and "exceeds" in ei.value.reason
    with pytest.raises(MoqtError):
        w.SubgroupStreamParser().feed(raw[:-3], fin=True)  # FIN inside the object
    with pytest.raises(MoqtError):
        w.SubgroupStreamParser().feed(bytes([0x05, 1]))  # FETCH stream: not implemented
    with pytest.raises(MoqtError):
        w.SubgroupStreamParser().feed(bytes([0x16, 1, 1, 0]))  # reserved type
    bad_status = hdr.encode() + bytes([0, 0, 2])
    with pytest.raises(MoqtError):
        w.SubgroupStreamParser().feed(bad_status)


def test_datagrams() -> None:
    for dg in [
        w.ObjectDatagram(track_alias=1, group_id=2, object_id=0, payload=b"pp"),
        w.ObjectDatagram(track_alias=1, group_id=2, object_id=5, payload=b"pp", end_of_group=True),
        w.ObjectDatagram(track_alias=1, group_id=2, object_id=5, payload=b"pp",
                         extensions=(w.Extension(type=2, value=3),)),
        w.ObjectDatagram(track_alias=1, group_id=2, object_id=5, status=w.ObjectStatus.END_OF_TRACK),
    ]:
        o = w.decode_datagram(dg.encode())
        assert (o.track_alias, o.group_id, o.object_id, o.payload) == (1, 2, dg.object_id, dg.payload)
        assert o.datagram
    with pytest.raises(MoqtError):
        w.decode_datagram(bytes([0x09, 1, 1]))
    with pytest.raises(MoqtError):
        w.decode_datagram(bytes([0x00, 1]))


def test_auth_token_structure() -> None:
    for t in [
        w.AuthToken(value=b"abc"),
        w.AuthToken(alias_type=w.TokenAliasType.REGISTER, alias=4, token_type=1, value=b"z"),
        w.AuthToken(alias_type=w.TokenAliasType.USE_ALIAS, alias=4),
        w.AuthToken(alias_type=w.TokenAliasType.DELETE, alias=4),
    ]:
        assert w.AuthToken.decode(t.encode()) == t
    with pytest.raises(MoqtError) as ei:
        w.AuthToken.decode(bytes([9]))
    assert ei.value.code == TC.MALFORMED_AUTH_TOKEN


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_fuzz_control_parser_only_typed_errors(data: bytes, chunk: int) -> None:
    p = w.ControlStreamParser()
    try:
        for i in range(0, len(data), chunk):
            p.feed(data[i : i + chunk])
    except MoqtError as e:
        assert isinstance(e.code, TC)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ALL_MESSAGES), st.data())
def test_fuzz_mutated_valid_messages(msg: w.Message, data: st.DataObject) -> None:
    raw = bytearray(msg.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        w.ControlStreamParser().feed(bytes(raw))
    except MoqtError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_data_stream_and_datagram(data: bytes, fin: bool) -> None:
    try:
        w.SubgroupStreamParser(max_object_bytes=64).feed(data, fin)
    except MoqtError:
        pass
    try:
        w.decode_datagram(data, max_object_bytes=64)
    except MoqtError:
        pass
    try:
        w.AuthToken.decode(data)
    except MoqtError:
        pass


# -- the per-frame fast paths (issue 17): the same bytes / values as the general codec --------

_GROUPS = st.one_of(st.integers(0, 70), st.integers(0, 2**62 - 1),
                    st.sampled_from([63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**62 - 1]))


@settings(max_examples=400, deadline=None)
@given(alias=st.one_of(st.integers(0, 70), st.integers(0, 2**62 - 1)), group=_GROUPS,
       prio=st.integers(0, 255), payload=st.binary(max_size=40), eog=st.booleans())
def test_encode_object_datagram_matches_the_dataclass(alias: int, group: int, prio: int,
                                                      payload: bytes, eog: bool) -> None:
    ref = w.ObjectDatagram(track_alias=alias, group_id=group, publisher_priority=prio,
                           payload=payload, end_of_group=eog).encode()
    assert w.encode_object_datagram(w.object_datagram_prefix(alias, eog), group, payload, prio) == ref
    parsed = w.parse_object_datagram(ref)
    if alias < 0x40:  # the fast parse covers every plain datagram with a one-byte alias
        assert parsed == (alias, group, prio, payload)
    else:
        assert parsed is None
    with pytest.raises(ValueError):
        w.encode_object_datagram(w.object_datagram_prefix(alias, eog), group, payload, 256)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=12),
    st.builds(lambda head, rest: bytes(head) + rest,
              st.lists(st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x20, 0x3F, 0x40, 0x41,
                                        0x80, 0xC0, 0xFF]), min_size=1, max_size=6),
              st.binary(max_size=6)),
))
def test_parse_object_datagram_agrees_with_decode_or_declines(data: bytes) -> None:
    """Whatever the bytes: the fast parse either declines (None) or returns exactly what
    decode_datagram decodes; it never raises (errors are the general path's)."""
    fast = w.parse_object_datagram(data)
    if fast is None:
        return
    obj = w.decode_datagram(data)
    assert obj.object_id == 0 and not obj.extensions and obj.status == w.ObjectStatus.NORMAL
    assert fast == (obj.track_alias, obj.group_id, obj.publisher_priority, obj.payload)
