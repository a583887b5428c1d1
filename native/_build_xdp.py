"""cffi (API mode) build script for clutchcall.native._xdp: the AF_XDP socket (links libxdp
and libbpf; setup.py only runs this when they link). The XDP program itself
(bpf/xdp_udp_redirect.bpf.c) is compiled with clang at run time by clutchcall.native.xdp."""

from __future__ import annotations

import os
import sys

from cffi import FFI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _build_common import CFLAGS, CSRC, src

CDEF = """
typedef struct cc_xsk cc_xsk_t;
typedef struct cc_xsk_stats { uint64_t rx_frames, tx_frames, tx_no_frame, fill_short; } cc_xsk_stats_t;
cc_xsk_t *cc_xsk_open(const char *ifname, uint32_t queue, const char *bpf_obj,
                      uint16_t udp_port_host, uint32_t nframes, uint32_t frame_sz, int *err);
void cc_xsk_close(cc_xsk_t *x);
int cc_xsk_fd(const cc_xsk_t *x);
void cc_xsk_get_stats(const cc_xsk_t *x, cc_xsk_stats_t *out);
int cc_xsk_recv_batch(cc_xsk_t *x, uint8_t *out, uint64_t out_cap, uint32_t *lens, uint32_t max);
int cc_xsk_send_batch(cc_xsk_t *x, const uint8_t *buf, const uint32_t *lens, uint32_t n);
typedef struct cc_peer { uint32_t ip; uint16_t port; uint8_t mac[6]; } cc_peer_t;
int cc_xsk_recv_udp(cc_xsk_t *x, uint32_t my_ip_be, uint16_t my_port, uint8_t *out,
                    uint64_t out_cap, uint32_t *lens, cc_peer_t *peers, uint32_t max,
                    uint64_t *dropped);
int cc_xsk_send_udp(cc_xsk_t *x, uint32_t my_ip_be, uint16_t my_port, const uint8_t *my_mac,
                    const uint8_t *buf, const uint32_t *lens, const cc_peer_t *peers, uint32_t n);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "clutchcall.native._xdp",
    '#include "cc_xdp.h"',
    sources=[src("cc_xdp.c")],
    include_dirs=[os.path.relpath(CSRC)],
    libraries=["xdp", "bpf"],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
