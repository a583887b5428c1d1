// MoQT draft-14 client over WebTransport: just what a ClutchCall caller needs.
//
// The edge speaks the same MoQT session over raw QUIC and over WebTransport (see
// prod/moqt/README.md); this is the browser's half of it. Wire format recap:
//   control stream (our first bidirectional stream): messages `Type (i) Length (16) Payload`;
//   data: one unidirectional stream per subgroup: SUBGROUP_HEADER, then objects
//   `ObjectIDDelta (i) [Extensions] PayloadLength (i) Payload | Status (i)`.
// Numbers are QUIC variable-length integers ("varints", 1/2/4/8 bytes, 2-bit length prefix).
//
// Flow (mirrors prod/caller/moqt_client.py): we send CLIENT_SETUP (token, codec),
// PUBLISH_NAMESPACE ("clutchcall", CALL_ID) and SUBSCRIBEs to "agent-audio" and "control" in
// one flight; the edge answers SERVER_SETUP, PUBLISH_NAMESPACE_OK, SUBSCRIBE_OKs and its own
// SUBSCRIBE to "caller-audio", which we accept. Then the call runs: each caller frame is one
// object (group = frame sequence number) on its own unidirectional stream.

export const MOQT_VERSION = 0xff00000e;
const MSG = {
  SUBSCRIBE: 0x03, SUBSCRIBE_OK: 0x04, SUBSCRIBE_ERROR: 0x05,
  PUBLISH_NAMESPACE: 0x06, PUBLISH_NAMESPACE_OK: 0x07, PUBLISH_NAMESPACE_ERROR: 0x08,
  PUBLISH_NAMESPACE_DONE: 0x09, UNSUBSCRIBE: 0x0a, PUBLISH_DONE: 0x0b, GOAWAY: 0x10,
  MAX_REQUEST_ID: 0x15, REQUESTS_BLOCKED: 0x1a, CLIENT_SETUP: 0x20, SERVER_SETUP: 0x21,
};
const PARAM = { MAX_REQUEST_ID: 0x02, AUTHORIZATION_TOKEN: 0x03 };
const PARAM_CODEC = 0x3c3b; // ClutchCall's setup parameter: "codec/rate/frame_ms"
const TOKEN_USE_VALUE = 0x03;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

// ------------------------------------------------------------------ bytes

/** A growing byte buffer with varint / length-prefixed writers. */
export class Writer {
  constructor() { this.parts = []; this.length = 0; }
  bytes(u8) { this.parts.push(u8); this.length += u8.length; return this; }
  u8(v) { return this.bytes(Uint8Array.of(v & 0xff)); }
  varint(v) {
    if (v < 0x40) return this.bytes(Uint8Array.of(v));
    if (v < 0x4000) return this.bytes(Uint8Array.of(0x40 | (v >> 8), v & 0xff));
    if (v < 0x40000000) {
      return this.bytes(Uint8Array.of(0x80 | (v >>> 24), (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff));
    }
    const hi = Math.floor(v / 2 ** 32), lo = v >>> 0; // exact below 2^53
    const b = new Uint8Array(8);
    new DataView(b.buffer).setUint32(0, hi);
    new DataView(b.buffer).setUint32(4, lo);
    b[0] |= 0xc0;
    return this.bytes(b);
  }
  lenBytes(u8) { return this.varint(u8.length).bytes(u8); }
  namespace(fields) { this.varint(fields.length); for (const f of fields) this.lenBytes(utf8.encode(f)); return this; }
  toBytes() {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) { out.set(p, o); o += p.length; }
    return out;
  }
}

/** Thrown by Reader when the buffer ends inside an item: wait for more bytes. */
class NeedMore extends Error {}

/** Reads varints and bytes from a Uint8Array; throws NeedMore at the end. */
export class Reader {
  constructor(u8) { this.u8 = u8; this.pos = 0; }
  get remaining() { return this.u8.length - this.pos; }
  need(n) { if (this.pos + n > this.u8.length) throw new NeedMore(); }
  uint8() { this.need(1); return this.u8[this.pos++]; }
  varint() {
    this.need(1);
    const first = this.u8[this.pos];
    const len = 1 << (first >> 6);
    this.need(len);
    let v = first & 0x3f;
    for (let i = 1; i < len; i++) v = v * 256 + this.u8[this.pos + i];
    this.pos += len;
    return v;
  }
  bytes(n) { this.need(n); const b = this.u8.subarray(this.pos, this.pos + n); this.pos += n; return b; }
  lenBytes() { return this.bytes(this.varint()); }
  params() {
    const out = new Map();
    for (let n = this.varint(); n > 0; n--) {
      const type = this.varint();
      out.set(type, type % 2 === 0 ? this.varint() : this.lenBytes());
    }
    return out;
  }
  namespace() { const out = []; for (let n = this.varint(); n > 0; n--) out.push(fromUtf8.decode(this.lenBytes())); return out; }
}

function concat(a, b) {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a); out.set(b, a.length);
  return out;
}

/** Frame one control message: Type (i) Length (16) Payload. */
function message(type, payload) {
  const body = payload.toBytes();
  return new Writer().varint(type).u8(body.length >> 8).u8(body.length).bytes(body).toBytes();
}

// ------------------------------------------------------------------ data streams

/** Incremental parser of one subgroup stream; feed() returns the objects completed so far. */
export class SubgroupParser {
  constructor() { this.buf = new Uint8Array(0); this.header = null; this.prevId = null; }
  feed(chunk) {
    this.buf = concat(this.buf, chunk);
    const objects = [];
    for (;;) {
      const r = new Reader(this.buf);
      try {
        if (this.header === null) {
          const type = r.varint();
          if (type < 0x10 || type > 0x1d || type === 0x16 || type === 0x17) {
            throw new Error(`unsupported data stream type 0x${type.toString(16)}`);
          }
          const mode = (type >> 1) & 0x03;
          const alias = r.varint(), group = r.varint();
          if (mode === 2) r.varint(); // explicit subgroup id
          r.uint8(); // publisher priority
          this.header = { alias, group, extensions: (type & 0x01) !== 0 };
        } else if (r.remaining > 0) {
          const delta = r.varint();
          const id = this.prevId === null ? delta : this.prevId + delta + 1;
          if (this.header.extensions) r.lenBytes();
          const len = r.varint();
          let payload = null;
          if (len === 0) r.varint(); // object status (end of group, ...)
          else payload = r.bytes(len).slice();
          this.prevId = id;
          if (payload) objects.push({ alias: this.header.alias, group: this.header.group, id, payload });
        } else {
          break;
        }
      } catch (e) {
        if (e instanceof NeedMore) break;
        throw e;
      }
      this.buf = this.buf.subarray(r.pos);
    }
    return objects;
  }
}

// ------------------------------------------------------------------ the session

/**
 * One MoQT caller session on a WebTransport.
 * Callbacks: onAgentAudio(payload: Uint8Array), onControl(event: object),
 *            onReady({codec}), onClosed({code, reason}).
 */
export class MoqtCaller {
  constructor(transport, { callId, token, codec }) {
    this.wt = transport;
    this.ns = ["clutchcall", callId];
    this.token = token;
    this.codec = codec; // "opus/48000/20" or "pcm16/48000/20"
    this.callbacks = {};
    this.nextRequest = 0; // client request ids: even, from 0
    this.agentRid = null; this.controlRid = null;
    this.aliasToTrack = new Map(); // alias -> "agent" | "control"
    this.heldObjects = [];
    this.callerAudioAlias = null; this.callerAudioRid = null;
    this.accepted = new Set();
    this.ready = false;
    this.framesSent = 0;
    this.dataStreamsOpen = 0;
  }

  on(name, fn) { this.callbacks[name] = fn; return this; }
  emit(name, arg) { const fn = this.callbacks[name]; if (fn) fn(arg); }

  /** Open the control stream, send the setup flight and start the read loops. */
  async start() {
    const bidi = await this.wt.createBidirectionalStream();
    this.control = bidi.writable.getWriter();
    const token = new Writer().varint(TOKEN_USE_VALUE).varint(0).bytes(utf8.encode(this.token)).toBytes();
    const setup = new Writer().varint(1).varint(MOQT_VERSION) // one version offered
      .varint(3) // parameters
      .varint(PARAM.MAX_REQUEST_ID).varint(64)
      .varint(PARAM.AUTHORIZATION_TOKEN).lenBytes(token)
      .varint(PARAM_CODEC).lenBytes(utf8.encode(this.codec));
    const ns = new Writer().varint(this.nextRequest).namespace(this.ns).varint(0);
    this.nextRequest += 2;
    this.agentRid = this.nextRequest; this.nextRequest += 2;
    this.controlRid = this.nextRequest; this.nextRequest += 2;
    const flight = [message(MSG.CLIENT_SETUP, setup), message(MSG.PUBLISH_NAMESPACE, ns),
                    this.subscribeMsg(this.agentRid, "agent-audio"), this.subscribeMsg(this.controlRid, "control")];
    for (const m of flight) await this.control.write(m);
    this.readControl(bidi.readable);
    this.readDataStreams();
  }

  subscribeMsg(rid, track) {
    const w = new Writer().varint(rid).namespace(this.ns).lenBytes(utf8.encode(track))
      .u8(0) /* subscriber priority */ .u8(1) /* ascending */ .u8(1) /* forward */
      .varint(0x2) /* LARGEST_OBJECT */ .varint(0) /* no parameters */;
    return message(MSG.SUBSCRIBE, w);
  }

  async readControl(readable) {
    const reader = readable.getReader();
    let buf = new Uint8Array(0);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf = concat(buf, value);
        for (;;) {
          const r = new Reader(buf);
          let type, body;
          try {
            type = r.varint();
            const len = (r.uint8() << 8) | r.uint8();
            body = r.bytes(len);
          } catch (e) { if (e instanceof NeedMore) break; throw e; }
          buf = buf.subarray(r.pos);
          await this.onMessage(type, new Reader(body));
        }
      }
    } catch (e) {
      console.warn("control stream ended:", e);
    }
  }

  async onMessage(type, r) {
    switch (type) {
      case MSG.SERVER_SETUP: {
        const version = r.varint();
        const params = r.params();
        const codec = params.get(PARAM_CODEC);
        this.serverCodec = codec ? fromUtf8.decode(codec) : null;
        if (version !== MOQT_VERSION) throw new Error(`server chose version ${version}`);
        break;
      }
      case MSG.SUBSCRIBE: { // the edge subscribes to our caller-audio track
        const rid = r.varint();
        const ns = r.namespace();
        const track = fromUtf8.decode(r.lenBytes());
        let reply;
        if (track === "caller-audio" && ns.join("/") === this.ns.join("/")) {
          this.callerAudioAlias = 0;
          this.callerAudioRid = rid;
          reply = new Writer().varint(rid).varint(this.callerAudioAlias).varint(0) // expires
            .u8(1).u8(0) /* ascending, no content yet */ .varint(0);
          await this.control.write(message(MSG.SUBSCRIBE_OK, reply));
        } else {
          reply = new Writer().varint(rid).varint(0x4).lenBytes(utf8.encode("no such track"));
          await this.control.write(message(MSG.SUBSCRIBE_ERROR, reply));
        }
        break;
      }
      case MSG.SUBSCRIBE_OK: {
        const rid = r.varint(), alias = r.varint();
        this.accepted.add(rid);
        this.aliasToTrack.set(alias, rid === this.agentRid ? "agent" : "control");
        const held = this.heldObjects; this.heldObjects = [];
        for (const obj of held) this.deliver(obj);
        break;
      }
      case MSG.SUBSCRIBE_ERROR: case MSG.PUBLISH_NAMESPACE_ERROR: {
        r.varint(); const code = r.varint(); const reason = fromUtf8.decode(r.lenBytes());
        this.emit("closed", { code, reason: `edge refused: ${reason}` });
        break;
      }
      case MSG.GOAWAY: this.emit("control", { type: "info", goaway: true }); break;
      case MSG.PUBLISH_DONE: this.emit("control", { type: "info", publish_done: r.varint() }); break;
      default: break; // PUBLISH_NAMESPACE_OK, MAX_REQUEST_ID, ...: nothing to do
    }
    if (!this.ready && this.callerAudioAlias !== null && this.accepted.has(this.agentRid)
        && this.accepted.has(this.controlRid)) {
      this.ready = true;
      this.emit("ready", { codec: this.serverCodec });
    }
  }

  async readDataStreams() {
    const streams = this.wt.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await streams.read();
        if (done) break;
        this.readOneStream(value);
      }
    } catch (e) { /* the session closed */ }
  }

  async readOneStream(stream) {
    const reader = stream.getReader();
    const parser = new SubgroupParser();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const obj of parser.feed(value)) this.deliver(obj);
      }
    } catch (e) { /* reset by the edge (e.g. cleared audio) or session closed */ }
  }

  deliver(obj) {
    const track = this.aliasToTrack.get(obj.alias);
    if (track === undefined) { if (this.heldObjects.length < 64) this.heldObjects.push(obj); return; }
    if (track === "agent") this.emit("agentAudio", obj.payload);
    else this.emit("control", JSON.parse(fromUtf8.decode(obj.payload)));
  }

  /** Send one caller frame: one object, group = seq, on its own unidirectional stream. */
  async sendFrame(seq, payload) {
    if (!this.ready) return;
    const header = new Writer().varint(0x18) /* subgroup header, end of group */
      .varint(this.callerAudioAlias).varint(seq).u8(0) /* priority */
      .varint(0) /* object id 0 */ .lenBytes(payload).toBytes();
    this.dataStreamsOpen++;
    try {
      const s = await this.wt.createUnidirectionalStream();
      const w = s.getWriter();
      w.write(header);
      await w.close();
      this.framesSent++;
    } catch (e) { /* session closing */ } finally { this.dataStreamsOpen--; }
  }

  /** Hang up: PUBLISH_DONE for caller-audio, then close the session with code 0. */
  async hangup() {
    try {
      if (this.callerAudioRid !== null) {
        const w = new Writer().varint(this.callerAudioRid).varint(0x2).varint(this.framesSent)
          .lenBytes(utf8.encode("hangup"));
        await this.control.write(message(MSG.PUBLISH_DONE, w));
      }
    } catch (e) { /* already closed */ }
    this.wt.close({ closeCode: 0, reason: "caller hung up" });
  }
}
