"""cffi (API mode) build script for clutchcall.native._uring: the io_uring UDP reactor
(links liburing; setup.py only runs this when liburing links)."""

from __future__ import annotations

import os
import sys

from cffi import FFI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _build_common import CFLAGS, CSRC, src
from _build_rings import CDEF as RINGS_CDEF

CDEF = RINGS_CDEF + """
#define CC_ADDR_SZ 28
typedef struct cc_uring cc_uring_t;
typedef struct cc_uring_stats {
  uint64_t rx_pkts, rx_bytes, rx_truncated, rx_enobufs, rx_errors, rearms;
  uint64_t tx_pkts, tx_errors, tx_waits, tx_gso_sends;
  uint32_t setup_flags;
} cc_uring_stats_t;
cc_uring_t *cc_uring_new(int fd, uint32_t entries, uint32_t nbufs, uint32_t buf_sz,
                         uint32_t nsend, cc_ring_t *ring, uint32_t flags, int *err);
void cc_uring_delete(cc_uring_t *u);
int cc_uring_ring_fd(const cc_uring_t *u);
int cc_uring_event_fd(const cc_uring_t *u);
void cc_uring_clear_event(cc_uring_t *u);
void cc_uring_get_stats(const cc_uring_t *u, cc_uring_stats_t *out);
int cc_uring_recv_batch(cc_uring_t *u, cc_consumer_t *c, uint8_t *out, uint64_t out_cap,
                        uint32_t *lens, uint8_t *addrs, uint32_t max, uint32_t wait_nr);
int cc_uring_poll(cc_uring_t *u, uint32_t max, uint32_t wait_nr);
int cc_uring_send_batch(cc_uring_t *u, const uint8_t *buf, const uint32_t *lens,
                        const uint8_t *addrs, const uint32_t *addrlens, uint32_t n);
int64_t cc_uring_echo_loop(cc_uring_t *u, cc_consumer_t *c, uint64_t max_pkts, int idle_ms);
#define IORING_SETUP_SINGLE_ISSUER ...
#define IORING_SETUP_DEFER_TASKRUN ...
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "clutchcall.native._uring",
    '#include "cc_tango.h"\n#include "cc_uring.h"\n#include <liburing.h>',
    sources=[src("cc_tango.c"), src("cc_uring.c")],
    include_dirs=[os.path.relpath(CSRC)],
    libraries=["uring"],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
