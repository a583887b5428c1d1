"""clutchcall.native: the cffi data plane of the production edge.

Theory of operation: C where the per-packet cost matters, Python where the decisions are.
Each part is a cffi (API mode) extension module built by ``pip install`` (setup.py
``cffi_modules``) plus a thin Python wrapper with batch-only calls:

- :mod:`~clutchcall.native.rings` (``_rings``, always built): mcache/dcache rings after
  Firedancer's tango: one producer, any number of consumers, overrun detected by sequence
  number, optional credit flow control;
- :mod:`~clutchcall.native.udpio` (``_uring``, built when liburing links): the io_uring UDP
  reactor (multishot recvmsg into a provided-buffer ring, completions published into a ring,
  batched sendmsg with UDP GSO) and the asyncio fallback with the same interface;
  :func:`~clutchcall.native.udpio.open_udp_io` picks one and falls back with one log line;
- :mod:`~clutchcall.native.xdp` (``_xdp``, built when libxdp/libbpf link): the AF_XDP path with
  our own XDP program (compiled with clang on first use);
- :mod:`~clutchcall.native.shard`: shard-per-core on one port (SO_REUSEPORT + a classic BPF
  program steering by QUIC DCID; aioquic connections with shard-encoding CIDs);
  :mod:`~clutchcall.native.shard_procs`: the one shard-process manager (fork N workers on
  their pre-bound sockets, ready handshake, events, bounded stop) under the echo service and
  ``prod``'s ``ShardedIngress`` (the edge's shards);
- :mod:`~clutchcall.native.quic_echo` / :mod:`~clutchcall.native.shard_server`: how the edge
  drives aioquic from datagram batches, as a runnable QUIC echo service
  (``clutchcall native echo``); :mod:`~clutchcall.native.cmd_bench_native`: ``clutchcall bench native``.
"""
