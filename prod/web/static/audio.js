// Audio for the browser caller: microphone in, Opus (or PCM16) both ways, playout out.
//
// Uplink:   getUserMedia (echo cancellation on) -> "capture" worklet (20 ms frames at 48 kHz)
//           -> WebCodecs AudioEncoder (Opus, 20 ms) -> one MoQT object per frame.
// Downlink: MoQT objects -> AudioDecoder (Opus) -> "playout" worklet (jitter buffer) -> speakers.
// Where WebCodecs has no Opus, both directions use PCM16 at 48 kHz (16-bit little-endian),
// which the edge accepts as codec "pcm16/48000/20".

export const RATE = 48000;
export const FRAME_MS = 20;
export const FRAME = RATE * FRAME_MS / 1000;

/** Return true if this browser can encode and decode Opus with WebCodecs. */
export async function opusSupported() {
  if (typeof AudioEncoder === "undefined" || typeof AudioDecoder === "undefined") return false;
  try {
    const enc = await AudioEncoder.isConfigSupported(encoderConfig());
    const dec = await AudioDecoder.isConfigSupported({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
    return Boolean(enc.supported && dec.supported);
  } catch (e) {
    return false;
  }
}

function encoderConfig() {
  return {
    codec: "opus", sampleRate: RATE, numberOfChannels: 1, bitrate: 32000,
    opus: { frameDuration: FRAME_MS * 1000, application: "voip" }, // frameDuration in µs
  };
}

/** Open the microphone; return {ctx, stream, capture} with the capture worklet running. */
export async function openMicrophone(ctx) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  });
  const source = ctx.createMediaStreamSource(stream);
  // no outputs: the worklet is pulled by the audio graph as a sink
  const capture = new AudioWorkletNode(ctx, "capture", { numberOfInputs: 1, numberOfOutputs: 0 });
  source.connect(capture);
  return { stream, capture };
}

/** Uplink encoder: encode(Float32Array of 960 samples) calls onFrame(Uint8Array) per frame. */
export class Uplink {
  constructor(useOpus, onFrame) {
    this.codec = useOpus ? "opus" : "pcm16";
    this.onFrame = onFrame;
    this.timestamp = 0; // µs
    if (useOpus) {
      this.encoder = new AudioEncoder({
        output: (chunk) => {
          const bytes = new Uint8Array(chunk.byteLength);
          chunk.copyTo(bytes);
          this.onFrame(bytes);
        },
        error: (e) => console.error("AudioEncoder:", e),
      });
      this.encoder.configure(encoderConfig());
    }
  }

  encode(samples) {
    if (this.encoder) {
      const data = new AudioData({
        format: "f32-planar", sampleRate: RATE, numberOfFrames: samples.length, numberOfChannels: 1,
        timestamp: this.timestamp, data: samples,
      });
      this.timestamp += (samples.length * 1e6) / RATE;
      this.encoder.encode(data);
      data.close();
    } else {
      this.onFrame(floatToPcm16(samples));
    }
  }

  close() { if (this.encoder && this.encoder.state !== "closed") this.encoder.close(); }
}

/** Downlink decoder: decode(payload) calls onSamples(Float32Array) with 48 kHz mono audio. */
export class Downlink {
  constructor(useOpus, onSamples) {
    this.onSamples = onSamples;
    this.timestamp = 0;
    if (useOpus) {
      this.decoder = new AudioDecoder({
        output: (data) => {
          const out = new Float32Array(data.numberOfFrames);
          data.copyTo(out, { planeIndex: 0, format: "f32-planar" });
          data.close();
          this.onSamples(out);
        },
        error: (e) => console.error("AudioDecoder:", e),
      });
      this.decoder.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
    }
  }

  decode(payload) {
    if (this.decoder) {
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: this.timestamp, data: payload }));
      this.timestamp += FRAME_MS * 1000;
    } else {
      this.onSamples(pcm16ToFloat(payload));
    }
  }

  close() { if (this.decoder && this.decoder.state !== "closed") this.decoder.close(); }
}

export function floatToPcm16(samples) {
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return out;
}

export function pcm16ToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 0x8000;
  return out;
}

/** RMS level of a frame in dBFS (-Infinity for digital silence). */
export function levelDbfs(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? 20 * Math.log10(rms) : -Infinity;
}
