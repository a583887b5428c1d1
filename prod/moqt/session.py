"""MoQT draft-14 session rules, sans-IO.

Theory of operation
-------------------
:class:`MoqtSession` is one endpoint of one MoQT session (role ``"server"`` for the edge,
``"client"`` for a caller). It owns no socket: the shell hands it the control stream's bytes
(:meth:`receive_control`), each unidirectional data stream's bytes
(:meth:`receive_data_stream`) and datagrams (:meth:`receive_datagram`), and gets back typed
events. Methods that send (``subscribe``, ``subscribe_ok``, ...) return the bytes to write on
the control stream (or, for :meth:`encode_object_stream`, a whole data stream).

It enforces the parts of draft-14 a peer can get wrong: the setup exchange comes first and
once; the version is 0xff00000e; request IDs have the peer's parity, arrive in order and stay
under the MAX_REQUEST_ID we granted; responses match a pending request; track aliases are not
reused; the control stream is never closed. Any violation raises
:class:`~clutchcall.prod.moqt.wire.MoqtError` with the termination code to close with; the
session is then dead (``closed`` is set) and the shell closes the QUIC connection.

Objects whose track alias is not yet known (a data stream can overtake its SUBSCRIBE_OK) are
held, at most ``max_pending_objects``, and released when the SUBSCRIBE_OK arrives; beyond that
they are dropped and counted in ``dropped_objects``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clutchcall.engine.errors import LocalProtocolError
from clutchcall.prod.moqt.wire import (
    MOQT_VERSION_14,
    ClientSetup,
    ControlStreamParser,
    FilterType,
    GoAway,
    MaxRequestId,
    Message,
    MoqObject,
    MoqtError,
    ObjectStatus,
    Params,
    PublishDone,
    PublishNamespace,
    PublishNamespaceDone,
    PublishNamespaceError,
    PublishNamespaceOk,
    RequestsBlocked,
    ServerSetup,
    SetupParam,
    SubgroupHeader,
    SubgroupStreamParser,
    Subscribe,
    SubscribeError,
    SubscribeNamespace,
    SubscribeNamespaceError,
    SubscribeNamespaceOk,
    SubscribeOk,
    TerminationCode,
    Unsubscribe,
    UnsubscribeNamespace,
    decode_datagram,
    encode_subgroup_stream,
    param_get,
    params_from,
    parse_object_datagram,
)

Role = Literal["client", "server"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of session events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupReceived(Event):
    message: ClientSetup | ServerSetup


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeReceived(Event):
    message: Subscribe


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeAccepted(Event):
    message: SubscribeOk
    request: Subscribe


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeRejected(Event):
    message: SubscribeError
    request: Subscribe


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeReceived(Event):
    request_id: int
    request: Subscribe | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishDoneReceived(Event):
    message: PublishDone


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespacePublished(Event):
    message: PublishNamespace


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceAccepted(Event):
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceRejected(Event):
    message: PublishNamespaceError


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceDone(Event):
    namespace: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceSubscribed(Event):
    """The peer asked for the namespaces under ``message.prefix`` (SUBSCRIBE_NAMESPACE): answer
    with :meth:`MoqtSession.subscribe_namespace_ok` (then PUBLISH_NAMESPACE each match) or
    :meth:`MoqtSession.subscribe_namespace_error`."""

    message: SubscribeNamespace


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceUnsubscribed(Event):
    prefix: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GoawayReceived(Event):
    new_session_uri: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxRequestIdReceived(Event):
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectReceived(Event):
    """An object on a track we subscribed to; ``request`` is that SUBSCRIBE."""

    object: MoqObject
    request: Subscribe
    stream_id: int | None


def _v(msg: str) -> MoqtError:
    return MoqtError(TerminationCode.PROTOCOL_VIOLATION, msg)


class MoqtSession:
    """One MoQT session endpoint; see the module docstring. Not thread-safe, no I/O."""

    def __init__(
        self,
        role: Role,
        *,
        max_request_id_for_peer: int = 64,
        max_object_bytes: int = 1 << 16,
        max_pending_objects: int = 64,
        max_data_streams: int = 256,
    ) -> None:
        if role not in ("client", "server"):
            raise LocalProtocolError(f"role must be client or server, not {role!r}")
        self.role: Role = role
        self.setup_done = False
        self.closed: MoqtError | None = None
        self.version: int | None = None
        self.peer_setup: ClientSetup | ServerSetup | None = None
        self._parser = ControlStreamParser()
        self._max_object_bytes = max_object_bytes
        self._max_pending = max_pending_objects
        self._max_streams = max_data_streams
        # request IDs: client even from 0, server odd from 1
        self._next_local_request = 0 if role == "client" else 1
        self._next_peer_request = 1 if role == "client" else 0
        self.max_request_id_for_peer = max_request_id_for_peer
        self.peer_max_request_id = 0  # what the peer lets us use (exclusive)
        # subscriptions we sent: request id -> Subscribe; alias -> Subscribe once accepted
        self._pending_subscribes: dict[int, Subscribe] = {}
        self._subscriptions: dict[int, Subscribe] = {}
        self._alias_to_sub: dict[int, Subscribe] = {}
        # subscriptions we accepted as publisher: request id -> (Subscribe, alias)
        self.published: dict[int, tuple[Subscribe, int]] = {}
        self._next_alias = 0
        self._pending_namespaces: dict[int, PublishNamespace] = {}
        self._streams: dict[int, SubgroupStreamParser] = {}
        self._held: list[tuple[MoqObject, int | None]] = []
        self.dropped_objects = 0
        self.objects_received = 0

    # ------------------------------------------------------------------ helpers

    def _fail(self, err: MoqtError) -> MoqtError:
        if self.closed is None:
            self.closed = err
        return err

    def _check_open(self) -> None:
        if self.closed is not None:
            raise LocalProtocolError(f"session already closed: {self.closed}")

    def can_request(self) -> bool:
        """True if the peer's MAX_REQUEST_ID lets us send one more request now."""
        return not self.setup_done or self._next_local_request < self.peer_max_request_id

    def requests_blocked(self) -> bytes:
        """Return REQUESTS_BLOCKED bytes (we want to send a request the peer does not allow yet)."""
        return RequestsBlocked(maximum_request_id=self.peer_max_request_id).encode()

    def _alloc_request(self) -> int:
        rid = self._next_local_request
        if self.setup_done and rid >= self.peer_max_request_id:
            raise LocalProtocolError(
                f"request id {rid} not allowed by peer's MAX_REQUEST_ID {self.peer_max_request_id}"
            )
        self._next_local_request += 2
        return rid

    def _check_peer_request(self, rid: int) -> None:
        if rid != self._next_peer_request:
            raise MoqtError(
                TerminationCode.INVALID_REQUEST_ID, f"request id {rid}, expected {self._next_peer_request}"
            )
        if rid >= self.max_request_id_for_peer:
            raise MoqtError(
                TerminationCode.TOO_MANY_REQUESTS, f"request id {rid} >= MAX_REQUEST_ID {self.max_request_id_for_peer}"
            )
        self._next_peer_request += 2

    # ------------------------------------------------------------------ setup

    def client_setup(self, params: Params = (), versions: tuple[int, ...] = (MOQT_VERSION_14,)) -> bytes:
        """(client) Return CLIENT_SETUP bytes; MAX_REQUEST_ID for the peer is added."""
        if self.role != "client":
            raise LocalProtocolError("only a client sends CLIENT_SETUP")
        extra = () if param_get(params, SetupParam.MAX_REQUEST_ID) is not None else params_from(
            [(int(SetupParam.MAX_REQUEST_ID), self.max_request_id_for_peer)]
        )
        return ClientSetup(versions=versions, params=tuple(params) + extra).encode()

    def server_setup(self, params: Params = ()) -> bytes:
        """(server) Accept the received CLIENT_SETUP: return SERVER_SETUP bytes."""
        if self.role != "server" or not isinstance(self.peer_setup, ClientSetup):
            raise LocalProtocolError("SERVER_SETUP answers a received CLIENT_SETUP")
        self._check_open()
        extra = () if param_get(params, SetupParam.MAX_REQUEST_ID) is not None else params_from(
            [(int(SetupParam.MAX_REQUEST_ID), self.max_request_id_for_peer)]
        )
        return ServerSetup(version=MOQT_VERSION_14, params=tuple(params) + extra).encode()

    def _on_setup(self, msg: Message) -> SetupReceived:
        if self.setup_done or self.peer_setup is not None:
            raise _v(f"second setup message {type(msg).__name__}")
        if self.role == "server":
            if not isinstance(msg, ClientSetup):
                raise _v(f"first control message must be CLIENT_SETUP, got {type(msg).__name__}")
            if MOQT_VERSION_14 not in msg.versions:
                raise MoqtError(
                    TerminationCode.VERSION_NEGOTIATION_FAILED,
                    "no supported version offered: " + ",".join(hex(v) for v in msg.versions),
                )
            params = msg.params
            # requests may be pipelined behind CLIENT_SETUP; the shell handles the setup event
            # (auth) first and closes the session if it refuses it.
            self.setup_done = True
        else:
            if not isinstance(msg, ServerSetup):
                raise _v(f"first control message must be SERVER_SETUP, got {type(msg).__name__}")
            if msg.version != MOQT_VERSION_14:
                raise MoqtError(TerminationCode.VERSION_NEGOTIATION_FAILED, f"server chose {msg.version:#x}")
            params = msg.params
            self.setup_done = True
        seen: set[int] = set()
        for p in params:
            if p.type in (SetupParam.PATH, SetupParam.MAX_REQUEST_ID, SetupParam.AUTHORITY) and p.type in seen:
                raise _v(f"setup parameter {p.type:#x} repeated")
            seen.add(p.type)
        mri = param_get(params, SetupParam.MAX_REQUEST_ID)
        self.peer_max_request_id = int(mri) if isinstance(mri, int) else 0
        if self.role == "server" and param_get(params, SetupParam.PATH) is not None:
            path = param_get(params, SetupParam.PATH)
            assert isinstance(path, bytes)
            if not path.startswith(b"/") and path != b"":
                raise MoqtError(TerminationCode.MALFORMED_PATH, f"PATH {path[:64]!r} does not start with /")
        self.version = MOQT_VERSION_14
        self.peer_setup = msg
        return SetupReceived(message=msg)

    # ------------------------------------------------------------------ receive

    def receive_control(self, data: bytes, fin: bool = False) -> list[Event]:
        """Feed control-stream bytes; return the events. Raises MoqtError (session is then dead)."""
        self._check_open()
        try:
            events: list[Event] = []
            for msg in self._parser.feed(data):
                events.extend(self._on_message(msg))
            if fin:
                raise _v("control stream closed by peer")
            return events
        except MoqtError as err:
            raise self._fail(err) from None

    def _on_message(self, msg: Message) -> list[Event]:
        if isinstance(msg, (ClientSetup, ServerSetup)):
            return [self._on_setup(msg)]
        if self.peer_setup is None:
            raise _v(f"{type(msg).__name__} before setup")
        if isinstance(msg, Subscribe):
            self._check_peer_request(msg.request_id)
            return [SubscribeReceived(message=msg)]
        if isinstance(msg, PublishNamespace):
            self._check_peer_request(msg.request_id)
            return [NamespacePublished(message=msg)]
        if isinstance(msg, SubscribeOk):
            req = self._pending_subscribes.pop(msg.request_id, None)
            if req is None:
                raise _v(f"SUBSCRIBE_OK for unknown request {msg.request_id}")
            if msg.track_alias in self._alias_to_sub:
                raise MoqtError(TerminationCode.DUPLICATE_TRACK_ALIAS, f"track alias {msg.track_alias} reused")
            self._subscriptions[msg.request_id] = req
            self._alias_to_sub[msg.track_alias] = req
            events: list[Event] = [SubscribeAccepted(message=msg, request=req)]
            held, self._held = self._held, []
            for obj, sid in held:
                events.extend(self._deliver(obj, sid))
            return events
        if isinstance(msg, SubscribeError):
            req = self._pending_subscribes.pop(msg.request_id, None)
            if req is None:
                raise _v(f"SUBSCRIBE_ERROR for unknown request {msg.request_id}")
            return [SubscribeRejected(message=msg, request=req)]
        if isinstance(msg, PublishNamespaceOk):
            if self._pending_namespaces.pop(msg.request_id, None) is None:
                raise _v(f"PUBLISH_NAMESPACE_OK for unknown request {msg.request_id}")
            return [NamespaceAccepted(request_id=msg.request_id)]
        if isinstance(msg, PublishNamespaceError):
            if self._pending_namespaces.pop(msg.request_id, None) is None:
                raise _v(f"PUBLISH_NAMESPACE_ERROR for unknown request {msg.request_id}")
            return [NamespaceRejected(message=msg)]
        if isinstance(msg, PublishNamespaceDone):
            return [NamespaceDone(namespace=msg.namespace)]
        if isinstance(msg, Unsubscribe):
            entry = self.published.pop(msg.request_id, None)
            return [UnsubscribeReceived(request_id=msg.request_id, request=entry[0] if entry else None)]
        if isinstance(msg, PublishDone):
            sub = self._subscriptions.get(msg.request_id)
            if sub is None and msg.request_id not in self._pending_subscribes:
                raise _v(f"PUBLISH_DONE for unknown subscription {msg.request_id}")
            return [PublishDoneReceived(message=msg)]
        if isinstance(msg, MaxRequestId):
            if msg.request_id < self.peer_max_request_id:
                raise _v(f"MAX_REQUEST_ID decreased to {msg.request_id}")
            self.peer_max_request_id = msg.request_id
            return [MaxRequestIdReceived(request_id=msg.request_id)]
        if isinstance(msg, GoAway):
            if self.role == "server" and msg.new_session_uri:
                raise _v("GOAWAY from a client carries a URI")
            return [GoawayReceived(new_session_uri=msg.new_session_uri)]
        if isinstance(msg, RequestsBlocked):
            return []
        if isinstance(msg, (SubscribeNamespace, SubscribeNamespaceOk, SubscribeNamespaceError,
                            UnsubscribeNamespace)):
            return self._on_namespace_subscription(msg)
        raise _v(f"{type(msg).__name__} not supported")  # pragma: no cover

    def _deliver(self, obj: MoqObject, stream_id: int | None) -> list[Event]:
        sub = self._alias_to_sub.get(obj.track_alias)
        if sub is None:
            if len(self._held) >= self._max_pending:
                self.dropped_objects += 1
                return []
            self._held.append((obj, stream_id))
            return []
        self.objects_received += 1
        return [ObjectReceived(object=obj, request=sub, stream_id=stream_id)]

    def receive_data_stream(self, stream_id: int, data: bytes, fin: bool = False) -> list[Event]:
        """Feed bytes of a peer's unidirectional stream; return object events. Raises MoqtError."""
        self._check_open()
        try:
            if not self.setup_done:
                raise _v("data stream before setup completed")
            parser = self._streams.get(stream_id)
            if parser is None:
                if len(self._streams) >= self._max_streams:
                    raise _v("too many concurrent data streams")
                parser = self._streams[stream_id] = SubgroupStreamParser(self._max_object_bytes)
            objs = parser.feed(data, fin)
            if fin:
                del self._streams[stream_id]
            events: list[Event] = []
            for obj in objs:
                events.extend(self._deliver(obj, stream_id))
            return events
        except MoqtError as err:
            raise self._fail(err) from None

    def stream_reset(self, stream_id: int) -> None:
        """The peer reset a data stream: forget its partial state (not an error)."""
        self._streams.pop(stream_id, None)

    def receive_datagram(self, data: bytes) -> list[Event]:
        """Feed one QUIC DATAGRAM; return object events. Raises MoqtError."""
        self._check_open()
        try:
            if not self.setup_done:
                raise _v("datagram before setup completed")
            return self._deliver(decode_datagram(data, self._max_object_bytes), None)
        except MoqtError as err:
            raise self._fail(err) from None

    def receive_object_datagram(self, data: bytes) -> tuple[Subscribe, int, bytes] | None:
        """The fast path of :meth:`receive_datagram` for the common datagram (one 20 ms audio
        frame): if ``data`` is an OBJECT_DATAGRAM of object 0 without extensions
        (:func:`~clutchcall.prod.moqt.wire.parse_object_datagram`) within the object size
        limit, on a track this session subscribed to, count it and return (the subscription,
        group, payload) -- what :meth:`receive_datagram`'s one ``ObjectReceived`` would carry,
        without building the event. Return None, having changed nothing, for anything else
        (a closed session, before setup, another datagram form, an unknown alias, an
        oversized payload): :meth:`receive_datagram` then handles it (and its errors)."""
        if self.closed is not None or not self.setup_done:
            return None
        parsed = parse_object_datagram(data)
        if parsed is None:
            return None
        alias, group, _prio, payload = parsed
        sub = self._alias_to_sub.get(alias)
        if sub is None or len(payload) > self._max_object_bytes:
            return None
        self.objects_received += 1
        return sub, group, payload

    # ------------------------------------------------------------------ send

    def subscribe(
        self, namespace: tuple[bytes, ...], track_name: bytes, params: Params = (), priority: int = 128
    ) -> tuple[int, bytes]:
        """Return (request id, SUBSCRIBE bytes) for the latest object onwards."""
        self._check_open()
        rid = self._alloc_request()
        msg = Subscribe(
            request_id=rid, namespace=namespace, track_name=track_name, subscriber_priority=priority,
            filter_type=FilterType.LARGEST_OBJECT, params=params,
        )
        self._pending_subscribes[rid] = msg
        return rid, msg.encode()

    def subscribe_ok(self, request: Subscribe, params: Params = ()) -> tuple[int, bytes]:
        """(publisher) Accept a received SUBSCRIBE; return (track alias, SUBSCRIBE_OK bytes)."""
        self._check_open()
        alias = self._next_alias
        self._next_alias += 1
        self.published[request.request_id] = (request, alias)
        return alias, SubscribeOk(request_id=request.request_id, track_alias=alias, params=params).encode()

    def subscribe_error(self, request: Subscribe, code: int, reason: str) -> bytes:
        """(publisher) Refuse a received SUBSCRIBE; return SUBSCRIBE_ERROR bytes."""
        return SubscribeError(request_id=request.request_id, error_code=code, reason=reason).encode()

    def unsubscribe(self, request_id: int) -> bytes:
        """Return UNSUBSCRIBE bytes for one of our subscriptions and forget it."""
        sub = self._subscriptions.pop(request_id, None)
        if sub is not None:
            for alias, s in list(self._alias_to_sub.items()):
                if s is sub:
                    del self._alias_to_sub[alias]
        return Unsubscribe(request_id=request_id).encode()

    def publish_done(self, request_id: int, status_code: int, reason: str = "", stream_count: int = 0) -> bytes:
        """(publisher) End a subscription we serve; return PUBLISH_DONE bytes."""
        self.published.pop(request_id, None)
        return PublishDone(
            request_id=request_id, status_code=status_code, stream_count=stream_count, reason=reason
        ).encode()

    def publish_namespace(self, namespace: tuple[bytes, ...], params: Params = ()) -> tuple[int, bytes]:
        """Return (request id, PUBLISH_NAMESPACE bytes)."""
        self._check_open()
        rid = self._alloc_request()
        msg = PublishNamespace(request_id=rid, namespace=namespace, params=params)
        self._pending_namespaces[rid] = msg
        return rid, msg.encode()

    def publish_namespace_ok(self, request_id: int) -> bytes:
        return PublishNamespaceOk(request_id=request_id).encode()

    def publish_namespace_error(self, request_id: int, code: int, reason: str) -> bytes:
        return PublishNamespaceError(request_id=request_id, error_code=code, reason=reason).encode()

    # ------------------------------------------------------------------ SUBSCRIBE_NAMESPACE

    def _on_namespace_subscription(self, msg: Message) -> list[Event]:
        if isinstance(msg, SubscribeNamespace):
            self._check_peer_request(msg.request_id)
            return [NamespaceSubscribed(message=msg)]
        if isinstance(msg, UnsubscribeNamespace):
            return [NamespaceUnsubscribed(prefix=msg.prefix)]
        assert isinstance(msg, (SubscribeNamespaceOk, SubscribeNamespaceError))
        # we never send SUBSCRIBE_NAMESPACE: a response cannot match a request of ours
        raise _v(f"{type(msg).__name__} for unknown request {msg.request_id}")

    def subscribe_namespace_ok(self, request_id: int) -> bytes:
        """(publisher) Accept the peer's SUBSCRIBE_NAMESPACE; return SUBSCRIBE_NAMESPACE_OK bytes."""
        return SubscribeNamespaceOk(request_id=request_id).encode()

    def subscribe_namespace_error(self, request_id: int, code: int, reason: str) -> bytes:
        """(publisher) Refuse the peer's SUBSCRIBE_NAMESPACE; return SUBSCRIBE_NAMESPACE_ERROR bytes."""
        return SubscribeNamespaceError(request_id=request_id, error_code=code, reason=reason).encode()

    def goaway(self, uri: bytes = b"") -> bytes:
        return GoAway(new_session_uri=uri).encode()

    def grant_requests(self, new_max: int) -> bytes:
        """Raise the peer's MAX_REQUEST_ID; return MAX_REQUEST_ID bytes."""
        if new_max < self.max_request_id_for_peer:
            raise LocalProtocolError("MAX_REQUEST_ID may not decrease")
        self.max_request_id_for_peer = new_max
        return MaxRequestId(request_id=new_max).encode()

    @staticmethod
    def encode_object_stream(
        track_alias: int, group_id: int, payload: bytes, priority: int = 128, end_of_group: bool = True
    ) -> bytes:
        """Return a whole subgroup stream carrying one object (object 0 of ``group_id``)."""
        header = SubgroupHeader(
            track_alias=track_alias, group_id=group_id, publisher_priority=priority, end_of_group=end_of_group
        )
        if payload:
            return encode_subgroup_stream(header, [(0, payload)])
        return encode_subgroup_stream(header, [(0, b"", ObjectStatus.END_OF_GROUP)])
