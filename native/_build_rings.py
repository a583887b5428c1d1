"""cffi (API mode) build script for clutchcall.native._rings: the mcache/dcache rings."""

from __future__ import annotations

import os
import sys

from cffi import FFI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _build_common import CFLAGS, CSRC, src

CDEF = """
typedef struct cc_ring cc_ring_t;
typedef struct cc_consumer {
  cc_ring_t *ring;
  uint64_t seq;
  int fseq_idx;
  uint64_t overrun_cnt;
  uint64_t drained_cnt;
} cc_consumer_t;
#define CC_MAX_FSEQ 16
#define CC_CHUNK_SZ 64
cc_ring_t *cc_ring_new(uint64_t depth, uint32_t mtu, uint32_t fseq_cnt);
void cc_ring_delete(cc_ring_t *ring);
uint64_t cc_ring_depth(const cc_ring_t *ring);
uint32_t cc_ring_mtu(const cc_ring_t *ring);
uint64_t cc_ring_seq_next(const cc_ring_t *ring);
uint64_t cc_ring_data_sz(const cc_ring_t *ring);
int64_t cc_publish_batch(cc_ring_t *ring, const uint8_t *buf, const uint32_t *lens,
                         const uint64_t *sigs, uint32_t n, uint16_t ctl);
int cc_consumer_init(cc_consumer_t *c, cc_ring_t *ring, int fseq_idx);
void cc_consumer_fini(cc_consumer_t *c);
uint32_t cc_drain_batch(cc_consumer_t *c, uint8_t *out, uint64_t out_cap, uint32_t *lens,
                        uint64_t *seqs, uint64_t *sigs, uint32_t max);
uint64_t cc_stress_produce(cc_ring_t *ring, uint64_t total, uint32_t sz, uint32_t batch,
                           uint64_t max_spins, int pattern);
uint64_t cc_stress_consume(cc_consumer_t *c, uint64_t until_seq, uint32_t batch,
                           uint64_t max_spins, int verify);
"""

UDPBENCH_CDEF = """
int64_t cc_udp_blast(int fd, const uint8_t *dst, uint32_t dstlen, uint64_t total,
                     uint32_t window, uint32_t sz, int idle_ms, uint64_t *active_us);
int64_t cc_udp_flood(int fd, const uint8_t *dst, uint32_t dstlen, uint64_t total, uint32_t sz,
                     uint64_t *elapsed_us);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF + UDPBENCH_CDEF)
ffibuilder.set_source(
    "clutchcall.native._rings",
    '#include "cc_tango.h"\n#include "cc_udpbench.h"',
    sources=[src("cc_tango.c"), src("cc_udpbench.c")],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
