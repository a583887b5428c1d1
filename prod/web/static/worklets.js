// AudioWorklet processors: the microphone tap and the agent playout with its jitter buffer.
// They run on the audio rendering thread; the page talks to them through `port` messages.

const FRAME = 960; // 20 ms at 48 kHz: one caller frame

/**
 * "capture": cuts the microphone signal into 20 ms frames (960 samples at 48 kHz) and posts
 * each one (Float32Array) to the page, which encodes and sends it.
 */
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Float32Array(FRAME);
    this.fill = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.frame[this.fill++] = channel[i];
        if (this.fill === FRAME) {
          this.port.postMessage(this.frame, [this.frame.buffer]);
          this.frame = new Float32Array(FRAME);
          this.fill = 0;
        }
      }
    }
    return true;
  }
}

/**
 * "playout": plays agent audio at 1x from a queue of Float32Array chunks.
 *
 * Jitter buffer: after an underrun (or at the start) it waits until `targetMs` of audio is
 * queued before playing again, so frames that arrive a little late do not click. Messages:
 *   {type: "audio", samples}   queue decoded agent audio (48 kHz mono)
 *   {type: "clear"}            drop everything queued (barge-in: the edge's clear_playout)
 *   {type: "gain", value}      duck (e.g. 0.25) or restore (1.0) the agent
 *   {type: "pause"} / {type: "resume"}  hold the agent (nothing is dropped) / go on
 * Every 50 ms it posts {type: "stats", ...}: samples played, their sum of squares (the page's
 * RMS of what it really played), samples cleared, what is queued, whether it is playing.
 */
class PlayoutProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.target = Math.round((opts.targetMs || 40) * sampleRate / 1000);
    this.queue = [];
    this.offset = 0; // read position in queue[0]
    this.queued = 0;
    this.playing = false;
    this.paused = false;
    this.gain = 1.0;
    this.played = 0;
    this.sumSquares = 0;
    this.cleared = 0;
    this.clears = 0;
    this.underruns = 0;
    this.sinceStats = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "audio") {
      this.queue.push(msg.samples);
      this.queued += msg.samples.length;
    } else if (msg.type === "clear") {
      this.cleared += this.queued;
      this.clears += 1;
      this.queue = [];
      this.offset = 0;
      this.queued = 0;
      this.playing = false;
    } else if (msg.type === "gain") {
      this.gain = msg.value;
    } else if (msg.type === "pause") {
      this.paused = true;
    } else if (msg.type === "resume") {
      this.paused = false;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.playing && this.queued >= this.target) this.playing = true;
    if (this.playing && !this.paused) {
      let i = 0;
      while (i < out.length && this.queue.length > 0) {
        const chunk = this.queue[0];
        const n = Math.min(out.length - i, chunk.length - this.offset);
        for (let k = 0; k < n; k++) {
          const s = chunk[this.offset + k] * this.gain;
          out[i + k] = s;
          this.sumSquares += s * s;
        }
        i += n;
        this.offset += n;
        this.queued -= n;
        this.played += n;
        if (this.offset === chunk.length) { this.queue.shift(); this.offset = 0; }
      }
      if (i < out.length) { this.playing = false; this.underruns += 1; } // ran dry: rebuffer
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceStats += out.length;
    if (this.sinceStats >= sampleRate / 20) {
      this.sinceStats = 0;
      this.port.postMessage({
        type: "stats", played: this.played, sumSquares: this.sumSquares, cleared: this.cleared,
        clears: this.clears, queued: this.queued, playing: this.playing && !this.paused,
        underruns: this.underruns,
      });
    }
    return true;
  }
}

registerProcessor("capture", CaptureProcessor);
registerProcessor("playout", PlayoutProcessor);
