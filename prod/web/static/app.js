// The ClutchCall browser caller: connects, streams the microphone, plays the agent, shows state.
//
// Everything the page needs comes in the URL fragment (printed by `clutchcall serve`):
//   #call=CALL_ID&token=TOKEN&port=PORT[&hash=BASE64URL_SHA256_OF_CERT]
// optional: &codec=pcm16 (force the PCM16 fallback), &vad_dbfs=-45, &jitter_ms=40, &autostart=1,
//           &record=1 (keep the captured microphone audio for window.clutchcallCaptureB64())
// The WebTransport session goes to https://<this host>:PORT/moq; with `hash` the edge's
// short-lived self-signed certificate is accepted through `serverCertificateHashes`.
//
// Mouth-to-ear turn latency (docs/architecture.md section 6), measured here as the Python caller does:
// a turn ends at the last caller frame sent that was speech (level above VAD_DBFS) before at
// least TURN_GAP_MS of non-speech; its latency is that frame's send time -> the arrival of the
// first agent-audio object after it.

import { Downlink, FRAME, FRAME_MS, RATE, Uplink, levelDbfs, openMicrophone, opusSupported } from "./audio.js";
import { MoqtCaller } from "./moqt.js";

const params = new URLSearchParams(location.hash.slice(1));
const VAD_DBFS = Number(params.get("vad_dbfs") || -45);
const TURN_GAP_MS = 300;
const JITTER_TARGET_MS = Number(params.get("jitter_ms") || 40);

// Observable state, read by the UI and by tests (window.clutchcall).
const call = {
  state: "idle", // idle | connecting | listening | caller speaking | agent speaking | barge-in pending | ended
  transport: "webtransport",
  codec: null,
  connected: false,
  connectMs: null,
  framesSent: 0,
  agentFrames: 0,
  turns: [], // {turn, lastSpeechAt, mouthToEarMs}
  controls: [],
  commits: 0,
  playout: { played: 0, rms: 0, cleared: 0, clears: 0, queued: 0, playing: false, underruns: 0 },
  closed: null, // {code, reason}
  error: null,
  log: [],
};
window.clutchcall = call;

// Timelines for a test harness to measure with its own VAD (kept out of window.clutchcall,
// which is polled): frames[k] = performance.now() when microphone frame k was captured (and
// handed to the encoder), agent[i] = arrival of agent-audio object i; with record=1 the
// captured 48 kHz audio, one Int16Array per frame (20 s of calls: about 2 MB).
const timelines = { frames: [], agent: [] };
const captured = [];
const RECORD = params.get("record") === "1";
window.clutchcallTimes = timelines;
window.clutchcallCaptureB64 = () => {
  const all = new Uint8Array(captured.length * FRAME * 2);
  captured.forEach((f, i) => all.set(new Uint8Array(f.buffer), i * FRAME * 2));
  let bin = "";
  for (let i = 0; i < all.length; i += 0x8000) bin += String.fromCharCode(...all.subarray(i, i + 0x8000));
  return btoa(bin);
};

const $ = (id) => document.getElementById(id);

function log(msg) {
  const line = `${(performance.now() / 1000).toFixed(2)}s ${msg}`;
  call.log.push(line);
  console.log(line);
  const el = $("log");
  el.textContent = call.log.slice(-12).join("\n");
}

function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

// ------------------------------------------------------------------ state shown on the page

let callerSpeaking = false;
let lastSpeechAt = null; // performance.now() of the last speech frame sent
let quietMs = 0;
let agentSpeaking = false;

function updateState() {
  if (call.closed || call.error) call.state = "ended";
  else if (!call.connected) call.state = "connecting";
  else if (callerSpeaking && agentSpeaking) call.state = "barge-in pending";
  else if (agentSpeaking) call.state = "agent speaking";
  else if (callerSpeaking) call.state = "caller speaking";
  else call.state = "listening";
  const el = $("state");
  el.textContent = call.state;
  el.dataset.state = call.state.replace(/ /g, "-");
  $("codec").textContent = call.codec || "-";
  $("sent").textContent = call.framesSent;
  $("received").textContent = call.agentFrames;
  $("played").textContent = (call.playout.played / RATE).toFixed(1) + " s";
  $("clears").textContent = call.playout.clears;
}

function renderTurns() {
  const body = $("turns");
  body.innerHTML = "";
  for (const t of call.turns.slice(-10)) {
    const tr = document.createElement("tr");
    const ms = t.mouthToEarMs === null ? "…" : `${Math.round(t.mouthToEarMs)} ms`;
    tr.innerHTML = `<td>${t.turn}</td><td class="latency">${ms}</td>`;
    body.appendChild(tr);
  }
}

// ------------------------------------------------------------------ the call

async function start() {
  $("call").disabled = true;
  const callId = params.get("call"), token = params.get("token");
  if (!callId || !token) throw new Error("the URL fragment needs call= and token= (printed by clutchcall serve)");
  call.state = "connecting"; updateState();

  const ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
  await ctx.audioWorklet.addModule("worklets.js");
  await ctx.resume();
  const useOpus = params.get("codec") !== "pcm16" && await opusSupported();
  call.codec = `${useOpus ? "opus" : "pcm16"}/${RATE}/${FRAME_MS}`;
  log(`codec ${call.codec}${useOpus ? "" : " (no WebCodecs Opus here: PCM16 fallback)"}`);

  // playout: agent audio -> jitter buffer -> speakers
  const playout = new AudioWorkletNode(ctx, "playout", {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { targetMs: JITTER_TARGET_MS },
  });
  playout.connect(ctx.destination);
  playout.port.onmessage = (e) => {
    const s = e.data;
    call.playout = {
      played: s.played, rms: s.played ? Math.sqrt(s.sumSquares / s.played) : 0, cleared: s.cleared,
      clears: s.clears, queued: s.queued, playing: s.playing, underruns: s.underruns,
    };
    agentSpeaking = s.playing;
    updateState();
  };
  const downlink = new Downlink(useOpus, (samples) => playout.port.postMessage({ type: "audio", samples }, [samples.buffer]));

  // the WebTransport session to the edge
  const port = params.get("port") || location.port;
  const url = `https://${location.hostname}:${port}/moq`;
  const options = {};
  if (params.get("hash")) {
    options.serverCertificateHashes = [{ algorithm: "sha-256", value: b64urlToBytes(params.get("hash")) }];
  }
  const t0 = performance.now();
  const wt = new WebTransport(url, options);
  await wt.ready;
  log(`WebTransport session to ${url} open`);
  wt.closed.then((info) => onClosed(info && info.closeCode, info && info.reason),
                 (err) => onClosed(err && err.streamErrorCode, String(err)));

  const moqt = new MoqtCaller(wt, { callId, token, codec: call.codec });
  window.clutchcallSession = moqt;
  const ready = new Promise((resolve) => moqt.on("ready", resolve));
  moqt.on("agentAudio", (payload) => {
    const now = performance.now();
    timelines.agent.push(now);
    call.agentFrames++;
    for (const t of call.turns) {
      if (t.mouthToEarMs === null && now >= t.lastSpeechAt) {
        t.mouthToEarMs = now - t.lastSpeechAt;
        log(`turn ${t.turn}: mouth-to-ear ${Math.round(t.mouthToEarMs)} ms`);
        renderTurns();
      }
    }
    downlink.decode(payload);
  });
  moqt.on("control", (event) => onControl(event, playout));
  moqt.on("closed", (info) => onClosed(info.code, info.reason));
  await moqt.start();
  await ready;
  call.connected = true;
  call.connectMs = performance.now() - t0;
  log(`MoQT session ready in ${Math.round(call.connectMs)} ms (edge codec ${moqt.serverCodec})`);
  updateState();

  // the microphone: every 20 ms frame is measured (VAD), encoded and sent
  const mic = await openMicrophone(ctx);
  let seq = 0;
  const uplink = new Uplink(useOpus, (bytes) => {
    moqt.sendFrame(seq++, bytes);
    call.framesSent = moqt.framesSent;
  });
  mic.capture.port.onmessage = (e) => {
    if (call.closed) return;
    const samples = e.data;
    const speech = levelDbfs(samples) > VAD_DBFS;
    const now = performance.now();
    timelines.frames.push(now);
    if (RECORD) captured.push(Int16Array.from(samples, (v) => Math.max(-32768, Math.min(32767, Math.round(v * 32768)))));
    onVad(speech, now);
    uplink.encode(samples);
  };
  $("hangup").disabled = false;
  $("hangup").onclick = async () => {
    mic.stream.getTracks().forEach((t) => t.stop());
    uplink.close();
    await moqt.hangup();
  };
}

function onVad(speech, now) {
  if (speech) {
    lastSpeechAt = now;
    quietMs = 0;
    callerSpeaking = true;
  } else {
    quietMs += FRAME_MS;
    if (quietMs >= TURN_GAP_MS && lastSpeechAt !== null) {
      // the turn ended at its last speech frame: wait for the agent's first audio
      call.turns.push({ turn: call.turns.length + 1, lastSpeechAt, mouthToEarMs: null });
      lastSpeechAt = null;
      renderTurns();
    }
    if (quietMs >= TURN_GAP_MS) callerSpeaking = false;
  }
  updateState();
}

// The edge's control events. Today the edge sends clear_playout (barge-in confirmed) and
// commit / cancel / error. Ducking and pausing the agent, where the edge does them, happen on
// the frames it sends (the call core's downlink playout, engine/call/playout.py), so the page
// hears them without an event; duck / restore / pause / resume events, should an edge send
// them, act on this page's playout the same way.
function onControl(event, playout) {
  call.controls.push(event);
  switch (event.type) {
    case "clear_playout": // barge-in confirmed: drop the agent audio not yet played
      playout.port.postMessage({ type: "clear" });
      log("clear_playout: agent audio dropped");
      break;
    case "duck": { // soft barge-in: the agent goes quieter at once
      const db = Number(event.duck_db ?? event.db ?? -12);
      playout.port.postMessage({ type: "gain", value: Math.pow(10, db / 20) });
      break;
    }
    case "restore":
      playout.port.postMessage({ type: "gain", value: 1.0 });
      break;
    case "pause":
      playout.port.postMessage({ type: "pause" });
      break;
    case "resume":
      playout.port.postMessage({ type: "resume" });
      break;
    case "commit":
      call.commits++;
      log(`edge committed turn ${event.turn}`);
      break;
    case "cancel":
      log(`edge cancelled the agent (${event.agent_played_ms ?? "?"} ms played)`);
      break;
    case "error":
      log(`edge error: ${event.code} ${event.message}`);
      break;
    default:
      break;
  }
  updateState();
}

function onClosed(code, reason) {
  if (call.closed) return;
  call.closed = { code: code ?? null, reason: reason || "" };
  log(`session closed: code ${code} ${reason || ""}`);
  updateState();
}

function startCall() {
  start().catch((e) => {
    call.error = String(e && e.message ? e.message : e);
    log(`error: ${call.error}`);
    updateState();
  });
}

$("call").onclick = startCall;
updateState();
// autostart=1: call at once (a browser that allows audio without a click, e.g. a test run)
if (params.get("autostart") === "1") startCall();
