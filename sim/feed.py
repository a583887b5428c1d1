"""When the edge's uplink jitter buffer feeds caller frames to the call core, computed over a
whole call's arrival times: :func:`feed_schedule` (the simulator's "adaptive" model) and
:func:`jitter_releases` (the production :class:`~clutchcall.engine.call.JitterBuffer` itself).
Pure functions of the arrivals; :mod:`clutchcall.sim.world` runs them."""

from __future__ import annotations

import math

from clutchcall.engine.call import JitterBuffer, JitterStats


def feed_schedule(send: list[float], arrival: list[float], speech: tuple[bool, ...],
                  frame_s: float, nominal_owd: float, late_s: float, *,
                  skip_late_speech: bool = True, hold_s: float = 0.0
                  ) -> tuple[list[tuple[float, int, bool]], int]:
    """Return ([(feed time, seq, speech)], frames skipped): when and in which order the
    edge jitter buffer feeds caller frames to the engine.

    Frame k is fed at ``max(arrival, previous frame resolved, previous feed + frame)`` (in
    order, at most 1x). If that is past its deadline ``send + nominal_owd + late_s`` it is
    skipped -- except a speech frame when ``skip_late_speech`` is False (TCP: the bytes
    will come and the engine must hear the speech; silence is dropped to catch up). A
    skipped frame is resolved when it arrives or at its deadline, whichever is first.
    ``hold_s`` > 0 is a fixed playout schedule: no frame is fed before its playout time
    ``send + nominal_owd + hold_s``, and the deadline is at least that time.
    """
    out: list[tuple[float, int, bool]] = []
    last = -math.inf
    gate = -math.inf
    skipped = 0
    eps = 1e-9
    late_s = max(late_s, hold_s)
    for k in range(len(send)):
        a = arrival[k]
        nominal = send[k] + nominal_owd + hold_s
        dl = send[k] + nominal_owd + late_s
        t = max(gate, a)
        t = max(t, last + frame_s, nominal)
        if a < math.inf and t > a + eps and not speech[k] and t > nominal + eps:
            # behind the schedule: drop this silence frame to catch up
            skipped += 1
            gate = max(gate, a)
        elif t <= dl + eps or (a < math.inf and speech[k] and not skip_late_speech):
            out.append((t, k, speech[k]))
            last = gate = t
        else:
            skipped += 1
            r = min(dl, a)
            gate = max(gate, r)
    return out, skipped


def jitter_releases(arrival: list[float], speech: tuple[bool, ...], frame_s: float,
                    depth_s: float) -> tuple[list[tuple[float, int, bool, bool]], JitterStats]:
    """Run the production uplink jitter buffer (:class:`~clutchcall.engine.call.JitterBuffer`,
    the very object the ingress runs) over frames arriving at ``arrival`` (``math.inf``:
    never); return ([(release time, seq, speech, concealed)], its counters). A frame's payload
    tells the buffer whether it is silent (its lag-drain rule; production: an energy check);
    a concealed frame is non-speech. The buffer depends on nothing downstream, so it is
    driven here by its own arrivals and timer, exactly as the ingress's loop drives it."""
    jb = JitterBuffer(frame_ms=round(frame_s * 1000), depth_ms=round(depth_s * 1000),
                      is_silent=lambda p: p != b"s")
    order = sorted((a, k) for k, a in enumerate(arrival) if a < math.inf)
    out: list[tuple[float, int, bool, bool]] = []
    i, now = 0, -math.inf
    while True:
        t_arr = order[i][0] if i < len(order) else math.inf
        t_timer = jb.get_timer()
        t = t_arr if t_timer is None else min(t_arr, max(t_timer, now))
        if t == math.inf:
            break
        now = max(now, t)
        if t_arr <= now:
            k = order[i][1]
            jb.push(now, k, b"s" if speech[k] else b"")
            i += 1
        released = jb.pop(now)
        for f in released:
            out.append((now, f.seq, f.payload == b"s" and not f.concealed, f.concealed))
        if not released and t_arr > now and jb.get_timer() is not None \
                and jb.get_timer() <= now:  # type: ignore[operator]
            # nothing more can happen at ``now`` until the next arrival
            if t_arr == math.inf:
                break
            now = t_arr
    return out, jb.stats
