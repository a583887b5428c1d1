"""MoQT draft-14 wire codec (draft-ietf-moq-transport-14), sans-IO.

Theory of operation
-------------------
Three shapes of bytes travel on a MoQT session over raw QUIC (ALPN ``moq-00``):

* **Control messages** on the one bidirectional control stream: ``Type (i) Length (16)
  Payload``. :class:`ControlStreamParser` buffers stream bytes and yields whole typed
  messages (frozen dataclasses below); each message class has ``encode() -> bytes``.
* **Subgroup data streams** (unidirectional): a ``SUBGROUP_HEADER`` (type 0x10-0x15,
  0x18-0x1D) followed by objects whose IDs are delta-encoded.
  :class:`SubgroupStreamParser` parses a stream incrementally; :func:`encode_subgroup_stream`
  writes one.
* **Object datagrams** (QUIC DATAGRAM frames): types 0x00-0x07 (payload) and 0x20-0x21
  (status); :func:`decode_datagram` / :class:`ObjectDatagram.encode`.

Everything here is pure: bytes in, messages out, no clock, no I/O. Malformed, truncated
(inside a length-delimited message), unknown or over-limit input raises :class:`MoqtError`,
a :class:`~clutchcall.engine.errors.RemoteProtocolError` carrying the draft-14 session
termination code the session must be closed with. Nothing else escapes the parsers; the
hypothesis fuzz tests hold them to that.

What of draft-14 is implemented: varints; key-value-pair parameters (even = varint, odd =
length-prefixed bytes); the authorization-token structure (USE_VALUE / REGISTER / USE_ALIAS /
DELETE); CLIENT_SETUP, SERVER_SETUP, GOAWAY, MAX_REQUEST_ID, REQUESTS_BLOCKED, SUBSCRIBE,
SUBSCRIBE_OK, SUBSCRIBE_ERROR, UNSUBSCRIBE, PUBLISH_DONE, PUBLISH_NAMESPACE (+ OK / ERROR /
DONE); subgroup streams (all twelve header types, extension headers, object status);
object datagrams (payload and status). Not implemented (decoded as unknown -> PROTOCOL_VIOLATION
when received): FETCH and its stream type 0x05, TRACK_STATUS, SUBSCRIBE_UPDATE,
SUBSCRIBE_NAMESPACE, PUBLISH / PUBLISH_OK / PUBLISH_ERROR, PUBLISH_NAMESPACE_CANCEL.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from clutchcall.engine.errors import RemoteProtocolError

MOQT_ALPN = "moq-00"
MOQT_VERSION_14 = 0xFF00000E

MAX_VARINT = (1 << 62) - 1
MAX_REASON_BYTES = 1024
MAX_NAMESPACE_FIELDS = 32
MAX_FULL_TRACK_NAME_BYTES = 4096
MAX_GOAWAY_URI_BYTES = 8192
MAX_PARAM_BYTES = 0xFFFF
MAX_PARAMS = 64
MAX_VERSIONS = 64


class TerminationCode(enum.IntEnum):
    """Session termination error codes (draft-14, section 3.4 / IANA registry)."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    UNAUTHORIZED = 0x2
    PROTOCOL_VIOLATION = 0x3
    INVALID_REQUEST_ID = 0x4
    DUPLICATE_TRACK_ALIAS = 0x5
    KEY_VALUE_FORMATTING_ERROR = 0x6
    TOO_MANY_REQUESTS = 0x7
    INVALID_PATH = 0x8
    MALFORMED_PATH = 0x9
    GOAWAY_TIMEOUT = 0x10
    CONTROL_MESSAGE_TIMEOUT = 0x11
    DATA_STREAM_TIMEOUT = 0x12
    AUTH_TOKEN_CACHE_OVERFLOW = 0x13
    DUPLICATE_AUTH_TOKEN_ALIAS = 0x14
    VERSION_NEGOTIATION_FAILED = 0x15
    MALFORMED_AUTH_TOKEN = 0x16
    UNKNOWN_AUTH_TOKEN_ALIAS = 0x17
    EXPIRED_AUTH_TOKEN = 0x18
    INVALID_AUTHORITY = 0x19
    MALFORMED_AUTHORITY = 0x1A


class MoqtError(RemoteProtocolError):
    """The peer broke MoQT; close the session with :attr:`code` and :attr:`reason`."""

    def __init__(self, code: TerminationCode, reason: str) -> None:
        super().__init__(f"{code.name}: {reason}")
        self.code = code
        self.reason = reason


class MessageType(enum.IntEnum):
    """Control message types of draft-14 that this codec knows."""

    SUBSCRIBE = 0x03
    SUBSCRIBE_OK = 0x04
    SUBSCRIBE_ERROR = 0x05
    PUBLISH_NAMESPACE = 0x06
    PUBLISH_NAMESPACE_OK = 0x07
    PUBLISH_NAMESPACE_ERROR = 0x08
    PUBLISH_NAMESPACE_DONE = 0x09
    UNSUBSCRIBE = 0x0A
    PUBLISH_DONE = 0x0B
    GOAWAY = 0x10
    SUBSCRIBE_NAMESPACE = 0x11
    SUBSCRIBE_NAMESPACE_OK = 0x12
    SUBSCRIBE_NAMESPACE_ERROR = 0x13
    UNSUBSCRIBE_NAMESPACE = 0x14
    MAX_REQUEST_ID = 0x15
    REQUESTS_BLOCKED = 0x1A
    CLIENT_SETUP = 0x20
    SERVER_SETUP = 0x21


class SetupParam(enum.IntEnum):
    """Setup parameter types (draft-14 section 9.3.2)."""

    PATH = 0x01
    MAX_REQUEST_ID = 0x02
    AUTHORIZATION_TOKEN = 0x03
    MAX_AUTH_TOKEN_CACHE_SIZE = 0x04
    AUTHORITY = 0x05
    MOQT_IMPLEMENTATION = 0x07


class RequestParam(enum.IntEnum):
    """Version-specific (request) parameter types (draft-14 section 9.2.2)."""

    DELIVERY_TIMEOUT = 0x02
    AUTHORIZATION_TOKEN = 0x03
    MAX_CACHE_DURATION = 0x04


class FilterType(enum.IntEnum):
    NEXT_GROUP_START = 0x1
    LARGEST_OBJECT = 0x2
    ABSOLUTE_START = 0x3
    ABSOLUTE_RANGE = 0x4


class ObjectStatus(enum.IntEnum):
    NORMAL = 0x0
    DOES_NOT_EXIST = 0x1
    END_OF_GROUP = 0x3
    END_OF_TRACK = 0x4


class TokenAliasType(enum.IntEnum):
    DELETE = 0x0
    REGISTER = 0x1
    USE_ALIAS = 0x2
    USE_VALUE = 0x3


# --------------------------------------------------------------------------- varints


def encode_varint(value: int) -> bytes:
    """Return the QUIC variable-length encoding of ``value``; raises ValueError if out of range."""
    if value < 0 or value > MAX_VARINT:
        raise ValueError(f"varint out of range: {value}")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return struct.pack("!H", value | 0x4000)
    if value < 0x40000000:
        return struct.pack("!I", value | 0x80000000)
    return struct.pack("!Q", value | 0xC000000000000000)


class NeedMore(Exception):
    """Internal: the buffer ends before the item does (streaming parsers wait for more)."""


class Reader:
    """A cursor over bytes. Running out raises :class:`NeedMore`; callers decide what it means."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def varint(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise NeedMore
        first = self.data[pos]
        if first < 0x40:  # fast path: one byte
            self.pos = pos + 1
            return int(first)
        if first < 0x80 and pos + 2 <= self.end:  # two bytes
            self.pos = pos + 2
            return ((first & 0x3F) << 8) | self.data[pos + 1]
        length = 1 << (first >> 6)
        if self.pos + length > self.end:
            raise NeedMore
        value = first & 0x3F
        for i in range(1, length):
            value = (value << 8) | self.data[self.pos + i]
        self.pos += length
        return value

    def uint8(self) -> int:
        if self.pos >= self.end:
            raise NeedMore
        value = self.data[self.pos]
        self.pos += 1
        return int(value)

    def uint16(self) -> int:
        if self.pos + 2 > self.end:
            raise NeedMore
        value = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return int(value)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise NeedMore
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def length_bytes(self, limit: int, what: str) -> bytes:
        n = self.varint()
        if n > limit:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"{what} of {n} bytes exceeds {limit}")
        return self.take(n)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class Param:
    """One key-value pair: even types carry an int, odd types carry bytes."""

    type: int
    value: int | bytes

    def __post_init__(self) -> None:
        if self.type % 2 == 0 and not isinstance(self.value, int):
            raise ValueError(f"parameter {self.type:#x} is even: its value must be an int")
        if self.type % 2 == 1 and not isinstance(self.value, bytes):
            raise ValueError(f"parameter {self.type:#x} is odd: its value must be bytes")


Params = tuple[Param, ...]


def params_from(items: Mapping[int, int | bytes] | Iterable[tuple[int, int | bytes]]) -> Params:
    """Build a parameter tuple from a mapping or pairs; raises ValueError on a type/value mismatch."""
    pairs = items.items() if isinstance(items, Mapping) else items
    return tuple(Param(t, v) for t, v in pairs)


def param_get(params: Params, ptype: int) -> int | bytes | None:
    """Return the value of the first parameter of type ``ptype``, or None."""
    for p in params:
        if p.type == ptype:
            return p.value
    return None


def _encode_params(params: Params) -> bytes:
    out = [encode_varint(len(params))]
    for p in params:
        out.append(encode_varint(p.type))
        if isinstance(p.value, int):
            out.append(encode_varint(p.value))
        else:
            if len(p.value) > MAX_PARAM_BYTES:
                raise ValueError("parameter value too long")
            out.append(encode_varint(len(p.value)))
            out.append(p.value)
    return b"".join(out)


def _decode_params(r: Reader) -> Params:
    count = r.varint()
    if count > MAX_PARAMS:
        raise MoqtError(TerminationCode.KEY_VALUE_FORMATTING_ERROR, f"{count} parameters (limit {MAX_PARAMS})")
    out = []
    for _ in range(count):
        ptype = r.varint()
        if ptype % 2 == 0:
            out.append(Param(ptype, r.varint()))
        else:
            n = r.varint()
            if n > MAX_PARAM_BYTES:
                raise MoqtError(
                    TerminationCode.KEY_VALUE_FORMATTING_ERROR, f"parameter {ptype:#x} length {n} > 65535"
                )
            out.append(Param(ptype, r.take(n)))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthToken:
    """The Token structure carried in an AUTHORIZATION_TOKEN parameter (draft-14 9.2.1.1)."""

    alias_type: TokenAliasType = TokenAliasType.USE_VALUE
    alias: int | None = None
    token_type: int = 0
    value: bytes = b""

    def encode(self) -> bytes:
        """Return the parameter value bytes."""
        out = [encode_varint(self.alias_type)]
        if self.alias_type in (TokenAliasType.DELETE, TokenAliasType.REGISTER, TokenAliasType.USE_ALIAS):
            out.append(encode_varint(self.alias or 0))
        if self.alias_type in (TokenAliasType.REGISTER, TokenAliasType.USE_VALUE):
            out.append(encode_varint(self.token_type))
            out.append(self.value)
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> AuthToken:
        """Parse a token structure; raises MoqtError(MALFORMED_AUTH_TOKEN)."""
        r = Reader(data)
        try:
            raw = r.varint()
            try:
                alias_type = TokenAliasType(raw)
            except ValueError:
                raise MoqtError(TerminationCode.MALFORMED_AUTH_TOKEN, f"token alias type {raw}") from None
            alias = None
            token_type = 0
            value = b""
            if alias_type in (TokenAliasType.DELETE, TokenAliasType.REGISTER, TokenAliasType.USE_ALIAS):
                alias = r.varint()
            if alias_type in (TokenAliasType.REGISTER, TokenAliasType.USE_VALUE):
                token_type = r.varint()
                value = r.take(r.remaining())
            if r.remaining():
                raise MoqtError(TerminationCode.MALFORMED_AUTH_TOKEN, "trailing bytes after token alias")
        except NeedMore:
            raise MoqtError(TerminationCode.MALFORMED_AUTH_TOKEN, "truncated token") from None
        return cls(alias_type=alias_type, alias=alias, token_type=token_type, value=value)


# --------------------------------------------------------------------------- tuples, strings


def _encode_bytes(b: bytes) -> bytes:
    return encode_varint(len(b)) + b


def _encode_namespace(ns: Sequence[bytes]) -> bytes:
    return encode_varint(len(ns)) + b"".join(_encode_bytes(f) for f in ns)


def _decode_namespace(r: Reader) -> tuple[bytes, ...]:
    n = r.varint()
    if n < 1 or n > MAX_NAMESPACE_FIELDS:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"namespace with {n} fields (1..32)")
    fields_ = tuple(r.length_bytes(MAX_FULL_TRACK_NAME_BYTES, "namespace field") for _ in range(n))
    if sum(len(f) for f in fields_) > MAX_FULL_TRACK_NAME_BYTES:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "namespace longer than 4096 bytes")
    return fields_


def _decode_reason(r: Reader) -> str:
    raw = r.length_bytes(MAX_REASON_BYTES, "reason phrase")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "reason phrase is not UTF-8") from None


def _check_reason(reason: str) -> bytes:
    raw = reason.encode("utf-8")
    if len(raw) > MAX_REASON_BYTES:
        raise ValueError("reason phrase longer than 1024 bytes")
    return raw


# --------------------------------------------------------------------------- control messages


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of control messages: ``encode()`` gives the framed bytes (type, 16-bit length)."""

    TYPE: ClassVar[MessageType]

    def payload(self) -> bytes:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def encode(self) -> bytes:
        """Return ``Type (i) Length (16) Payload``; raises ValueError if the payload exceeds 65535."""
        body = self.payload()
        if len(body) > 0xFFFF:
            raise ValueError(f"{self.TYPE.name} payload {len(body)} bytes > 65535")
        return encode_varint(self.TYPE) + struct.pack("!H", len(body)) + body

    @classmethod
    def decode_payload(cls, r: Reader) -> Message:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSetup(Message):
    TYPE: ClassVar[MessageType] = MessageType.CLIENT_SETUP
    versions: tuple[int, ...]
    params: Params = ()

    def payload(self) -> bytes:
        return (
            encode_varint(len(self.versions))
            + b"".join(encode_varint(v) for v in self.versions)
            + _encode_params(self.params)
        )

    @classmethod
    def decode_payload(cls, r: Reader) -> ClientSetup:
        n = r.varint()
        if n < 1 or n > MAX_VERSIONS:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"CLIENT_SETUP offers {n} versions")
        versions = tuple(r.varint() for _ in range(n))
        return cls(versions=versions, params=_decode_params(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSetup(Message):
    TYPE: ClassVar[MessageType] = MessageType.SERVER_SETUP
    version: int
    params: Params = ()

    def payload(self) -> bytes:
        return encode_varint(self.version) + _encode_params(self.params)

    @classmethod
    def decode_payload(cls, r: Reader) -> ServerSetup:
        return cls(version=r.varint(), params=_decode_params(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAway(Message):
    TYPE: ClassVar[MessageType] = MessageType.GOAWAY
    new_session_uri: bytes = b""

    def payload(self) -> bytes:
        if len(self.new_session_uri) > MAX_GOAWAY_URI_BYTES:
            raise ValueError("GOAWAY URI longer than 8192 bytes")
        return _encode_bytes(self.new_session_uri)

    @classmethod
    def decode_payload(cls, r: Reader) -> GoAway:
        return cls(new_session_uri=r.length_bytes(MAX_GOAWAY_URI_BYTES, "GOAWAY URI"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxRequestId(Message):
    TYPE: ClassVar[MessageType] = MessageType.MAX_REQUEST_ID
    request_id: int

    def payload(self) -> bytes:
        return encode_varint(self.request_id)

    @classmethod
    def decode_payload(cls, r: Reader) -> MaxRequestId:
        return cls(request_id=r.varint())


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestsBlocked(Message):
    TYPE: ClassVar[MessageType] = MessageType.REQUESTS_BLOCKED
    maximum_request_id: int

    def payload(self) -> bytes:
        return encode_varint(self.maximum_request_id)

    @classmethod
    def decode_payload(cls, r: Reader) -> RequestsBlocked:
        return cls(maximum_request_id=r.varint())


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Message):
    TYPE: ClassVar[MessageType] = MessageType.SUBSCRIBE
    request_id: int
    namespace: tuple[bytes, ...]
    track_name: bytes
    subscriber_priority: int = 128
    group_order: int = 0x1  # ascending
    forward: int = 1
    filter_type: FilterType = FilterType.LARGEST_OBJECT
    start_group: int | None = None
    start_object: int | None = None
    end_group: int | None = None
    params: Params = ()

    def payload(self) -> bytes:
        out = [
            encode_varint(self.request_id),
            _encode_namespace(self.namespace),
            _encode_bytes(self.track_name),
            bytes((self.subscriber_priority, self.group_order, self.forward)),
            encode_varint(self.filter_type),
        ]
        if self.filter_type in (FilterType.ABSOLUTE_START, FilterType.ABSOLUTE_RANGE):
            out.append(encode_varint(self.start_group or 0) + encode_varint(self.start_object or 0))
        if self.filter_type == FilterType.ABSOLUTE_RANGE:
            out.append(encode_varint(self.end_group or 0))
        out.append(_encode_params(self.params))
        return b"".join(out)

    @classmethod
    def decode_payload(cls, r: Reader) -> Subscribe:
        request_id = r.varint()
        namespace = _decode_namespace(r)
        name = r.length_bytes(MAX_FULL_TRACK_NAME_BYTES, "track name")
        if len(name) + sum(len(f) for f in namespace) > MAX_FULL_TRACK_NAME_BYTES:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "full track name longer than 4096 bytes")
        prio, order, forward = r.uint8(), r.uint8(), r.uint8()
        if order > 2:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"group order {order}")
        if forward > 1:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"forward {forward}")
        raw_filter = r.varint()
        try:
            filt = FilterType(raw_filter)
        except ValueError:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"filter type {raw_filter}") from None
        sg = so = eg = None
        if filt in (FilterType.ABSOLUTE_START, FilterType.ABSOLUTE_RANGE):
            sg, so = r.varint(), r.varint()
        if filt == FilterType.ABSOLUTE_RANGE:
            eg = r.varint()
        return cls(
            request_id=request_id, namespace=namespace, track_name=name, subscriber_priority=prio,
            group_order=order, forward=forward, filter_type=filt, start_group=sg, start_object=so,
            end_group=eg, params=_decode_params(r),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeOk(Message):
    TYPE: ClassVar[MessageType] = MessageType.SUBSCRIBE_OK
    request_id: int
    track_alias: int
    expires: int = 0
    group_order: int = 0x1
    content_exists: bool = False
    largest_group: int | None = None
    largest_object: int | None = None
    params: Params = ()

    def payload(self) -> bytes:
        out = [
            encode_varint(self.request_id), encode_varint(self.track_alias), encode_varint(self.expires),
            bytes((self.group_order, 1 if self.content_exists else 0)),
        ]
        if self.content_exists:
            out.append(encode_varint(self.largest_group or 0) + encode_varint(self.largest_object or 0))
        out.append(_encode_params(self.params))
        return b"".join(out)

    @classmethod
    def decode_payload(cls, r: Reader) -> SubscribeOk:
        request_id, alias, expires = r.varint(), r.varint(), r.varint()
        order, exists = r.uint8(), r.uint8()
        if order not in (1, 2):
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"SUBSCRIBE_OK group order {order}")
        if exists > 1:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"content exists {exists}")
        lg = lo = None
        if exists:
            lg, lo = r.varint(), r.varint()
        return cls(
            request_id=request_id, track_alias=alias, expires=expires, group_order=order,
            content_exists=bool(exists), largest_group=lg, largest_object=lo, params=_decode_params(r),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _RequestError(Message):
    request_id: int
    error_code: int
    reason: str = ""

    def payload(self) -> bytes:
        return encode_varint(self.request_id) + encode_varint(self.error_code) + _encode_bytes(
            _check_reason(self.reason)
        )

    @classmethod
    def decode_payload(cls, r: Reader) -> _RequestError:
        return cls(request_id=r.varint(), error_code=r.varint(), reason=_decode_reason(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeError(_RequestError):
    TYPE: ClassVar[MessageType] = MessageType.SUBSCRIBE_ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishNamespaceError(_RequestError):
    TYPE: ClassVar[MessageType] = MessageType.PUBLISH_NAMESPACE_ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe(Message):
    TYPE: ClassVar[MessageType] = MessageType.UNSUBSCRIBE
    request_id: int

    def payload(self) -> bytes:
        return encode_varint(self.request_id)

    @classmethod
    def decode_payload(cls, r: Reader) -> Unsubscribe:
        return cls(request_id=r.varint())


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishDone(Message):
    TYPE: ClassVar[MessageType] = MessageType.PUBLISH_DONE
    request_id: int
    status_code: int
    stream_count: int = 0
    reason: str = ""

    def payload(self) -> bytes:
        return (
            encode_varint(self.request_id) + encode_varint(self.status_code)
            + encode_varint(self.stream_count) + _encode_bytes(_check_reason(self.reason))
        )

    @classmethod
    def decode_payload(cls, r: Reader) -> PublishDone:
        return cls(request_id=r.varint(), status_code=r.varint(), stream_count=r.varint(), reason=_decode_reason(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishNamespace(Message):
    TYPE: ClassVar[MessageType] = MessageType.PUBLISH_NAMESPACE
    request_id: int
    namespace: tuple[bytes, ...]
    params: Params = ()

    def payload(self) -> bytes:
        return encode_varint(self.request_id) + _encode_namespace(self.namespace) + _encode_params(self.params)

    @classmethod
    def decode_payload(cls, r: Reader) -> PublishNamespace:
        return cls(request_id=r.varint(), namespace=_decode_namespace(r), params=_decode_params(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishNamespaceOk(Message):
    TYPE: ClassVar[MessageType] = MessageType.PUBLISH_NAMESPACE_OK
    request_id: int

    def payload(self) -> bytes:
        return encode_varint(self.request_id)

    @classmethod
    def decode_payload(cls, r: Reader) -> PublishNamespaceOk:
        return cls(request_id=r.varint())


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishNamespaceDone(Message):
    TYPE: ClassVar[MessageType] = MessageType.PUBLISH_NAMESPACE_DONE
    namespace: tuple[bytes, ...]

    def payload(self) -> bytes:
        return _encode_namespace(self.namespace)

    @classmethod
    def decode_payload(cls, r: Reader) -> PublishNamespaceDone:
        return cls(namespace=_decode_namespace(r))


# -- SUBSCRIBE_NAMESPACE (draft-14 section 9.28-9.31): a subscriber asks for the namespaces under
# a prefix (0..32 fields; empty = all); the publisher answers OK / ERROR and then sends
# PUBLISH_NAMESPACE for each of its namespaces under the prefix.
def _decode_prefix(r: Reader) -> tuple[bytes, ...]:
    n = r.varint()
    if n > MAX_NAMESPACE_FIELDS:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"namespace prefix with {n} fields (0..32)")
    fields_ = tuple(r.length_bytes(MAX_FULL_TRACK_NAME_BYTES, "namespace field") for _ in range(n))
    if sum(len(f) for f in fields_) > MAX_FULL_TRACK_NAME_BYTES:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "namespace prefix longer than 4096 bytes")
    return fields_


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeNamespace(Message):
    TYPE: ClassVar[MessageType] = MessageType.SUBSCRIBE_NAMESPACE
    request_id: int
    prefix: tuple[bytes, ...]
    params: Params = ()

    def payload(self) -> bytes:
        return encode_varint(self.request_id) + _encode_namespace(self.prefix) + _encode_params(self.params)

    @classmethod
    def decode_payload(cls, r: Reader) -> SubscribeNamespace:
        return cls(request_id=r.varint(), prefix=_decode_prefix(r), params=_decode_params(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeNamespaceOk(Message):
    TYPE: ClassVar[MessageType] = MessageType.SUBSCRIBE_NAMESPACE_OK
    request_id: int

    def payload(self) -> bytes:
        return encode_varint(self.request_id)

    @classmethod
    def decode_payload(cls, r: Reader) -> SubscribeNamespaceOk:
        return cls(request_id=r.varint())


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeNamespaceError(_RequestError):
    TYPE: ClassVar[MessageType] = MessageType.SUBSCRIBE_NAMESPACE_ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeNamespace(Message):
    TYPE: ClassVar[MessageType] = MessageType.UNSUBSCRIBE_NAMESPACE
    prefix: tuple[bytes, ...]

    def payload(self) -> bytes:
        return _encode_namespace(self.prefix)

    @classmethod
    def decode_payload(cls, r: Reader) -> UnsubscribeNamespace:
        return cls(prefix=_decode_prefix(r))


MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        ClientSetup, ServerSetup, GoAway, MaxRequestId, RequestsBlocked, Subscribe, SubscribeOk,
        SubscribeError, Unsubscribe, PublishDone, PublishNamespace, PublishNamespaceOk,
        PublishNamespaceError, PublishNamespaceDone, SubscribeNamespace, SubscribeNamespaceOk,
        SubscribeNamespaceError, UnsubscribeNamespace,
    )
}


def decode_message(mtype: int, body: bytes) -> Message:
    """Decode one control message payload of type ``mtype``; raises MoqtError."""
    cls = MESSAGE_CLASSES.get(mtype)
    if cls is None:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"unknown control message type {mtype:#x}")
    r = Reader(body)
    try:
        msg = cls.decode_payload(r)
    except NeedMore:
        raise MoqtError(
            TerminationCode.PROTOCOL_VIOLATION, f"{cls.TYPE.name} payload truncated ({len(body)} bytes)"
        ) from None
    if r.remaining():
        raise MoqtError(
            TerminationCode.PROTOCOL_VIOLATION, f"{cls.TYPE.name} has {r.remaining()} bytes after its fields"
        )
    return msg


class ControlStreamParser:
    """Reassembles control-stream bytes into messages.

    ``feed(data)`` returns every message completed by ``data`` (possibly none) and keeps a
    partial one buffered. ``max_buffer`` bounds what a peer can make us hold.
    Raises :class:`MoqtError` for anything malformed; after that the parser is dead.
    """

    def __init__(self, max_buffer: int = 1 << 17) -> None:
        self._buf = bytearray()
        self._max = max_buffer
        self.messages_parsed = 0

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message waiting for more data."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        if len(self._buf) > self._max:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "control stream buffer overflow")
        out: list[Message] = []
        while self._buf:
            r = Reader(self._buf)
            try:
                mtype = r.varint()
                length = r.uint16()
            except NeedMore:
                break
            if mtype not in MESSAGE_CLASSES:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"unknown control message type {mtype:#x}")
            if r.remaining() < length:
                break
            body = bytes(self._buf[r.pos : r.pos + length])
            del self._buf[: r.pos + length]
            out.append(decode_message(mtype, body))
            self.messages_parsed += 1
        return out


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """An object extension header: even type -> int value, odd type -> bytes."""

    type: int
    value: int | bytes


def _encode_extensions(exts: Sequence[Extension]) -> bytes:
    parts = []
    for e in exts:
        parts.append(encode_varint(e.type))
        if e.type % 2 == 0:
            if not isinstance(e.value, int):
                raise ValueError(f"extension {e.type:#x} is even: its value must be an int")
            parts.append(encode_varint(e.value))
        else:
            if not isinstance(e.value, bytes):
                raise ValueError(f"extension {e.type:#x} is odd: its value must be bytes")
            parts.append(_encode_bytes(e.value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def _decode_extensions(r: Reader, max_bytes: int) -> tuple[Extension, ...]:
    n = r.varint()
    if n > max_bytes:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"extension headers of {n} bytes")
    if r.remaining() < n:
        raise NeedMore
    sub = Reader(r.data, r.pos, r.pos + n)
    out = []
    try:
        while sub.remaining():
            etype = sub.varint()
            if etype % 2 == 0:
                out.append(Extension(type=etype, value=sub.varint()))
            else:
                out.append(Extension(type=etype, value=sub.length_bytes(MAX_PARAM_BYTES, "extension")))
    except NeedMore:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "extension headers overrun their length") from None
    r.pos += n
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class MoqObject:
    """One object as received (from a subgroup stream or a datagram)."""

    track_alias: int
    group_id: int
    subgroup_id: int
    object_id: int
    publisher_priority: int
    payload: bytes = b""
    status: ObjectStatus = ObjectStatus.NORMAL
    extensions: tuple[Extension, ...] = ()
    datagram: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SubgroupHeader:
    """SUBGROUP_HEADER: type bits 0x01 extensions, 0x06 subgroup-id mode, 0x08 end of group."""

    track_alias: int
    group_id: int
    subgroup_id: int = 0
    publisher_priority: int = 128
    extensions_present: bool = False
    end_of_group: bool = False
    subgroup_id_mode: int = 0  # 0: zero, 1: first object id, 2: explicit

    @property
    def type(self) -> int:
        return 0x10 | (0x01 if self.extensions_present else 0) | (self.subgroup_id_mode << 1) | (
            0x08 if self.end_of_group else 0
        )

    def encode(self) -> bytes:
        out = encode_varint(self.type) + encode_varint(self.track_alias) + encode_varint(self.group_id)
        if self.subgroup_id_mode == 2:
            out += encode_varint(self.subgroup_id)
        return out + bytes((self.publisher_priority,))


SUBGROUP_TYPES = frozenset(t for t in range(0x10, 0x1E) if t not in (0x16, 0x17))


def encode_subgroup_stream(
    header: SubgroupHeader,
    objects: Sequence[tuple[int, bytes] | tuple[int, bytes, ObjectStatus]],
    extensions: Sequence[Sequence[Extension]] | None = None,
) -> bytes:
    """Return a whole subgroup stream: the header then ``(object_id, payload[, status])`` objects.

    Object IDs must increase; raises ValueError otherwise.
    """
    out = [header.encode()]
    prev: int | None = None
    for i, obj in enumerate(objects):
        oid: int = obj[0]
        payload: bytes = obj[1]
        status = obj[2] if len(obj) == 3 else ObjectStatus.NORMAL
        if prev is not None and oid <= prev:
            raise ValueError("object ids must increase within a subgroup")
        out.append(encode_varint(oid if prev is None else oid - prev - 1))
        if header.extensions_present:
            out.append(_encode_extensions(extensions[i] if extensions else ()))
        if payload:
            out.append(encode_varint(len(payload)) + payload)
        else:
            out.append(encode_varint(0) + encode_varint(status))
        prev = oid
    return b"".join(out)


class SubgroupStreamParser:
    """Parses one unidirectional data stream incrementally.

    ``feed(data, fin)`` returns the objects completed so far. The header is available as
    :attr:`header` once parsed. ``max_object_bytes`` bounds a single object's payload
    (oversized -> MoqtError(PROTOCOL_VIOLATION)). A FIN inside a header or an object, an
    unknown stream type (including FETCH 0x05, not implemented) or a bad status raises.
    """

    def __init__(self, max_object_bytes: int = 1 << 16) -> None:
        self._buf = bytearray()
        self._max = max_object_bytes
        self.header: SubgroupHeader | None = None
        self._prev_oid: int | None = None
        self.finished = False

    def feed(self, data: bytes, fin: bool = False) -> list[MoqObject]:
        if self.finished:
            if data:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "data after end of stream")
            return []
        self._buf += data
        out: list[MoqObject] = []
        while True:
            r = Reader(self._buf)
            try:
                if self.header is None:
                    self.header = self._parse_header(r)
                elif r.remaining():
                    out.append(self._parse_object(r))
                else:
                    break
            except NeedMore:
                if len(self._buf) > self._max + 64:
                    raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "data stream item exceeds limit") from None
                break
            del self._buf[: r.pos]
        if fin:
            self.finished = True
            if self._buf or self.header is None:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "data stream ended inside a header or object")
        return out

    def _parse_header(self, r: Reader) -> SubgroupHeader:
        stype = r.varint()
        if stype not in SUBGROUP_TYPES:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"unsupported data stream type {stype:#x}")
        mode = (stype >> 1) & 0x03
        alias, group = r.varint(), r.varint()
        sub = r.varint() if mode == 2 else 0
        prio = r.uint8()
        return SubgroupHeader(
            track_alias=alias, group_id=group, subgroup_id=sub, publisher_priority=prio,
            extensions_present=bool(stype & 0x01), end_of_group=bool(stype & 0x08), subgroup_id_mode=mode,
        )

    def _parse_object(self, r: Reader) -> MoqObject:
        h = self.header
        assert h is not None
        delta = r.varint()
        oid = delta if self._prev_oid is None else self._prev_oid + delta + 1
        if oid > MAX_VARINT:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "object id overflow")
        exts: tuple[Extension, ...] = ()
        if h.extensions_present:
            exts = _decode_extensions(r, self._max)
        length = r.varint()
        status = ObjectStatus.NORMAL
        payload = b""
        if length == 0:
            raw = r.varint()
            try:
                status = ObjectStatus(raw)
            except ValueError:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"object status {raw}") from None
        else:
            if length > self._max:
                raise MoqtError(
                    TerminationCode.PROTOCOL_VIOLATION, f"object of {length} bytes exceeds limit {self._max}"
                )
            payload = r.take(length)
        if status == ObjectStatus.DOES_NOT_EXIST and exts:
            raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "non-existent object with extensions")
        sub = h.subgroup_id
        if h.subgroup_id_mode == 1 and self._prev_oid is None:
            self.header = h = SubgroupHeader(
                track_alias=h.track_alias, group_id=h.group_id, subgroup_id=oid,
                publisher_priority=h.publisher_priority, extensions_present=h.extensions_present,
                end_of_group=h.end_of_group, subgroup_id_mode=1,
            )
            sub = oid
        self._prev_oid = oid
        return MoqObject(
            track_alias=h.track_alias, group_id=h.group_id, subgroup_id=sub, object_id=oid,
            publisher_priority=h.publisher_priority, payload=payload, status=status, extensions=exts,
        )


# --------------------------------------------------------------------------- datagrams


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectDatagram:
    """OBJECT_DATAGRAM (types 0x00-0x07) or, with ``status`` set, the status form (0x20/0x21)."""

    track_alias: int
    group_id: int
    object_id: int = 0
    publisher_priority: int = 128
    payload: bytes = b""
    end_of_group: bool = False
    extensions: tuple[Extension, ...] = field(default=())
    status: ObjectStatus | None = None

    def encode(self) -> bytes:
        """Return the datagram bytes."""
        ext = bool(self.extensions)
        if self.status is not None:
            out = encode_varint(0x20 | (1 if ext else 0)) + encode_varint(self.track_alias)
            out += encode_varint(self.group_id) + encode_varint(self.object_id)
            out += bytes((self.publisher_priority,))
            if ext:
                out += _encode_extensions(self.extensions)
            return out + encode_varint(self.status)
        no_oid = self.object_id == 0
        t = (0x01 if ext else 0) | (0x02 if self.end_of_group else 0) | (0x04 if no_oid else 0)
        out = encode_varint(t) + encode_varint(self.track_alias) + encode_varint(self.group_id)
        if not no_oid:
            out += encode_varint(self.object_id)
        out += bytes((self.publisher_priority,))
        if ext:
            out += _encode_extensions(self.extensions)
        return out + self.payload


def object_datagram_prefix(track_alias: int, end_of_group: bool = False) -> bytes:
    """Return the bytes every OBJECT_DATAGRAM of ``track_alias`` carrying object 0 without
    extensions starts with (type 0x04, or 0x06 with ``end_of_group``; then the alias): the
    fixed part of :func:`encode_object_datagram`, computed once per track by a sender.
    Raises ValueError for an alias out of varint range."""
    return bytes((0x06 if end_of_group else 0x04,)) + encode_varint(track_alias)


def encode_object_datagram(prefix: bytes, group_id: int, payload: bytes, publisher_priority: int = 128) -> bytes:
    """Return the OBJECT_DATAGRAM of object 0 of ``group_id`` (``prefix`` from
    :func:`object_datagram_prefix`): the same bytes as :meth:`ObjectDatagram.encode` with
    that alias, group, priority and payload, object 0 and no extensions, without building
    the dataclass (one per 20 ms audio frame). Raises ValueError for a group out of varint
    range or a priority outside 0..255."""
    if 0 <= group_id < 0x40:
        return prefix + bytes((group_id, publisher_priority)) + payload
    return prefix + encode_varint(group_id) + bytes((publisher_priority,)) + payload


def parse_object_datagram(data: bytes) -> tuple[int, int, int, bytes] | None:
    """The common OBJECT_DATAGRAM, decoded without a :class:`Reader`: return (track alias,
    group, publisher priority, payload) if ``data`` is type 0x04 or 0x06 (object 0, no
    extensions) with a one-byte alias and a whole group varint; None for anything else (a
    short, malformed or other datagram: :func:`decode_datagram` decides about it, with its
    errors). For such a datagram the values equal :func:`decode_datagram`'s."""
    n = len(data)
    if n < 4 or (data[0] | 0x02) != 0x06:
        return None
    alias = data[1]
    if alias >= 0x40:
        return None
    first = data[2]
    if first < 0x40:
        return alias, first, data[3], data[4:]
    size = 1 << (first >> 6)
    if 2 + size >= n:  # the group varint and the priority byte must fit
        return None
    group = first & 0x3F
    for i in range(3, 2 + size):
        group = (group << 8) | data[i]
    return alias, group, data[2 + size], data[3 + size:]


def decode_datagram(data: bytes, max_object_bytes: int = 1 << 16) -> MoqObject:
    """Decode one datagram into a :class:`MoqObject`; raises MoqtError(PROTOCOL_VIOLATION)."""
    r = Reader(data)
    try:
        t = r.varint()
        if t <= 0x07:
            alias, group = r.varint(), r.varint()
            oid = 0 if t & 0x04 else r.varint()
            prio = r.uint8()
            exts = _decode_extensions(r, max_object_bytes) if t & 0x01 else ()
            payload = r.take(r.remaining())
            if len(payload) > max_object_bytes:
                raise MoqtError(
                    TerminationCode.PROTOCOL_VIOLATION, f"object of {len(payload)} bytes exceeds limit"
                )
            return MoqObject(
                track_alias=alias, group_id=group, subgroup_id=0, object_id=oid, publisher_priority=prio,
                payload=payload, extensions=exts, datagram=True,
            )
        if t in (0x20, 0x21):
            alias, group, oid = r.varint(), r.varint(), r.varint()
            prio = r.uint8()
            exts = _decode_extensions(r, max_object_bytes) if t & 0x01 else ()
            raw = r.varint()
            if r.remaining():
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "bytes after datagram status")
            try:
                status = ObjectStatus(raw)
            except ValueError:
                raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"object status {raw}") from None
            return MoqObject(
                track_alias=alias, group_id=group, subgroup_id=0, object_id=oid, publisher_priority=prio,
                status=status, extensions=exts, datagram=True,
            )
    except NeedMore:
        raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, "truncated datagram") from None
    raise MoqtError(TerminationCode.PROTOCOL_VIOLATION, f"unknown datagram type {t:#x}")
