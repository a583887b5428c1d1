/* cc_tango.c: mcache/dcache rings; see cc_tango.h for the theory of operation. */
#include "cc_tango.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>

typedef struct {
  _Atomic uint64_t seq;
  _Atomic uint64_t sig;
  _Atomic uint64_t loc;   /* chunk (32) | sz (16) << 32 | ctl (16) << 48 */
  _Atomic uint64_t spare;
} cc_line_t;

typedef struct {
  _Atomic uint64_t seq;   /* consumer's next expected fragment */
  _Atomic int in_use;
  char pad[64 - sizeof(uint64_t) - sizeof(int)];
} cc_fseq_t;

struct cc_ring {
  /* read-mostly */
  uint64_t depth, mask;
  uint32_t mtu, chunks_per_frag;
  uint64_t nchunks;
  uint32_t fseq_cnt;
  cc_line_t *lines;
  uint8_t *dcache;
  char pad0[64];
  /* producer-owned, read by consumers/Python */
  _Atomic uint64_t seq_next;
  uint64_t chunk_cursor;
  char pad1[64];
  cc_fseq_t fseq[CC_MAX_FSEQ];
};

static inline int64_t seq_diff(uint64_t a, uint64_t b) { return (int64_t)(a - b); }

cc_ring_t *cc_ring_new(uint64_t depth, uint32_t mtu, uint32_t fseq_cnt) {
  if (depth < 2 || (depth & (depth - 1)) || depth > (1ULL << 32) || mtu == 0 || mtu > 65535 ||
      fseq_cnt > CC_MAX_FSEQ)
    return NULL;
  cc_ring_t *r = aligned_alloc(64, (sizeof(cc_ring_t) + 63) & ~(size_t)63);
  if (!r) return NULL;
  memset(r, 0, sizeof(*r));
  r->depth = depth;
  r->mask = depth - 1;
  r->mtu = mtu;
  r->chunks_per_frag = (mtu + CC_CHUNK_SZ - 1) / CC_CHUNK_SZ;
  r->nchunks = (depth + 2) * (uint64_t)r->chunks_per_frag;
  r->fseq_cnt = fseq_cnt;
  r->lines = aligned_alloc(64, depth * sizeof(cc_line_t));
  r->dcache = aligned_alloc(64, r->nchunks * CC_CHUNK_SZ);
  if (!r->lines || !r->dcache) {
    free(r->lines);
    free(r->dcache);
    free(r);
    return NULL;
  }
  memset(r->dcache, 0, r->nchunks * CC_CHUNK_SZ);
  for (uint64_t i = 0; i < depth; i++) {
    /* "published depth fragments ago": behind every consumer's expectation for this slot */
    atomic_store_explicit(&r->lines[i].seq, i - depth, memory_order_relaxed);
    atomic_store_explicit(&r->lines[i].sig, 0, memory_order_relaxed);
    atomic_store_explicit(&r->lines[i].loc, 0, memory_order_relaxed);
    atomic_store_explicit(&r->lines[i].spare, 0, memory_order_relaxed);
  }
  atomic_store_explicit(&r->seq_next, 0, memory_order_release);
  return r;
}

void cc_ring_delete(cc_ring_t *r) {
  if (!r) return;
  free(r->lines);
  free(r->dcache);
  free(r);
}

uint64_t cc_ring_depth(const cc_ring_t *r) { return r->depth; }
uint32_t cc_ring_mtu(const cc_ring_t *r) { return r->mtu; }
uint64_t cc_ring_data_sz(const cc_ring_t *r) { return r->nchunks * CC_CHUNK_SZ; }
uint64_t cc_ring_seq_next(const cc_ring_t *r) {
  return atomic_load_explicit(&((cc_ring_t *)r)->seq_next, memory_order_acquire);
}

/* Credits: how many more fragments may be published before the slowest reliable consumer
 * would be overrun. UINT64_MAX when no reliable consumer is registered. */
static uint64_t credits(cc_ring_t *r, uint64_t seq) {
  uint64_t best = UINT64_MAX;
  for (uint32_t i = 0; i < r->fseq_cnt; i++) {
    if (!atomic_load_explicit(&r->fseq[i].in_use, memory_order_acquire)) continue;
    uint64_t f = atomic_load_explicit(&r->fseq[i].seq, memory_order_acquire);
    int64_t used = seq_diff(seq, f);
    uint64_t cr = used >= (int64_t)r->depth ? 0 : r->depth - (uint64_t)(used < 0 ? 0 : used);
    if (cr < best) best = cr;
  }
  return best;
}

int64_t cc_publish_batch(cc_ring_t *r, const uint8_t *buf, const uint32_t *lens,
                         const uint64_t *sigs, uint32_t n, uint16_t ctl) {
  uint64_t seq = atomic_load_explicit(&r->seq_next, memory_order_relaxed);
  uint64_t cr = r->fseq_cnt ? credits(r, seq) : UINT64_MAX;
  uint32_t todo = n < cr ? n : (uint32_t)cr;
  uint64_t off = 0;
  uint32_t i;
  for (i = 0; i < todo; i++) {
    uint32_t sz = lens[i];
    if (sz > r->mtu) break;
    uint64_t need = (sz + CC_CHUNK_SZ - 1) / CC_CHUNK_SZ;
    if (need == 0) need = 1;
    uint64_t chunk = r->chunk_cursor;
    if (chunk + need > r->nchunks) chunk = 0;
    r->chunk_cursor = chunk + need;
    memcpy(r->dcache + chunk * CC_CHUNK_SZ, buf + off, sz);
    off += sz;
    cc_line_t *l = &r->lines[seq & r->mask];
    atomic_store_explicit(&l->seq, seq - 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&l->sig, sigs ? sigs[i] : 0, memory_order_relaxed);
    atomic_store_explicit(&l->loc, chunk | ((uint64_t)sz << 32) | ((uint64_t)ctl << 48),
                          memory_order_relaxed);
    atomic_store_explicit(&l->seq, seq, memory_order_release);
    seq++;
  }
  atomic_store_explicit(&r->seq_next, seq, memory_order_release);
  if (i < todo) return -1;
  return (int64_t)i;
}

int cc_consumer_init(cc_consumer_t *c, cc_ring_t *r, int fseq_idx) {
  memset(c, 0, sizeof(*c));
  c->ring = r;
  c->fseq_idx = -1;
  c->seq = atomic_load_explicit(&r->seq_next, memory_order_acquire);
  if (fseq_idx >= 0) {
    if ((uint32_t)fseq_idx >= r->fseq_cnt) return -1;
    int expect = 0;
    atomic_store_explicit(&r->fseq[fseq_idx].seq, c->seq, memory_order_release);
    if (!atomic_compare_exchange_strong(&r->fseq[fseq_idx].in_use, &expect, 1)) return -1;
    c->fseq_idx = fseq_idx;
  }
  return 0;
}

void cc_consumer_fini(cc_consumer_t *c) {
  if (c->fseq_idx >= 0) {
    atomic_store_explicit(&c->ring->fseq[c->fseq_idx].in_use, 0, memory_order_release);
    c->fseq_idx = -1;
  }
}

uint32_t cc_drain_batch(cc_consumer_t *c, uint8_t *out, uint64_t out_cap, uint32_t *lens,
                        uint64_t *seqs, uint64_t *sigs, uint32_t max) {
  cc_ring_t *r = c->ring;
  uint64_t off = 0;
  uint32_t n = 0;
  while (n < max) {
    uint64_t seq = c->seq;
    cc_line_t *l = &r->lines[seq & r->mask];
    uint64_t s0 = atomic_load_explicit(&l->seq, memory_order_acquire);
    int64_t d = seq_diff(s0, seq);
    if (d < 0) break; /* not yet published */
    if (d > 0) {      /* lapped: resync to the newer fragment, count the loss exactly */
      c->overrun_cnt += (uint64_t)d;
      c->seq = s0;
      continue;
    }
    uint64_t sig = atomic_load_explicit(&l->sig, memory_order_relaxed);
    uint64_t loc = atomic_load_explicit(&l->loc, memory_order_relaxed);
    uint64_t chunk = loc & 0xffffffffu;
    uint32_t sz = (uint32_t)((loc >> 32) & 0xffff);
    /* chunk and sz come from one atomic word, so they belong together; bound them anyway */
    if (sz > r->mtu || chunk * CC_CHUNK_SZ + sz > r->nchunks * CC_CHUNK_SZ) {
      chunk = 0;
      sz = 0;
    }
    if (off + sz > out_cap) break;
    memcpy(out + off, r->dcache + chunk * CC_CHUNK_SZ, sz);
    atomic_thread_fence(memory_order_acquire);
    uint64_t s1 = atomic_load_explicit(&l->seq, memory_order_relaxed);
    if (s1 != seq) continue; /* overwritten while reading: next pass sees the overrun */
    lens[n] = sz;
    if (seqs) seqs[n] = seq;
    if (sigs) sigs[n] = sig;
    off += sz;
    n++;
    c->seq = seq + 1;
  }
  c->drained_cnt += n;
  if (c->fseq_idx >= 0)
    atomic_store_explicit(&r->fseq[c->fseq_idx].seq, c->seq, memory_order_release);
  return n;
}

#define CC_SIG_KEY 0x9e3779b97f4a7c15ULL

static void fill_pattern(uint8_t *p, uint64_t seq, uint32_t sz) {
  uint8_t b = (uint8_t)(seq * 131);
  for (uint32_t j = 0; j < sz; j++) p[j] = (uint8_t)(b + j);
}

uint64_t cc_stress_produce(cc_ring_t *r, uint64_t total, uint32_t sz, uint32_t batch,
                           uint64_t max_spins, int pattern) {
  if (sz > r->mtu || batch == 0) return 0;
  uint8_t *buf = malloc((size_t)sz * batch + 1);
  uint32_t *lens = malloc(sizeof(uint32_t) * batch);
  uint64_t *sigs = malloc(sizeof(uint64_t) * batch);
  if (!buf || !lens || !sigs) {
    free(buf); free(lens); free(sigs);
    return 0;
  }
  memset(buf, 0xab, (size_t)sz * batch);
  for (uint32_t i = 0; i < batch; i++) lens[i] = sz;
  uint64_t done = 0, spins = 0;
  while (done < total && spins < max_spins) {
    uint64_t seq = cc_ring_seq_next(r);
    uint32_t want = (uint32_t)((total - done) < batch ? (total - done) : batch);
    if (pattern)
      for (uint32_t i = 0; i < want; i++) {
        fill_pattern(buf + (size_t)i * sz, seq + i, sz);
        sigs[i] = (seq + i) ^ CC_SIG_KEY;
      }
    int64_t got = cc_publish_batch(r, buf, lens, pattern ? sigs : NULL, want, 0);
    if (got <= 0) {
      spins++;
      sched_yield(); /* out of credits: let the reliable consumer run (few cores) */
      continue;
    }
    done += (uint64_t)got;
  }
  free(buf); free(lens); free(sigs);
  return done;
}

uint64_t cc_stress_consume(cc_consumer_t *c, uint64_t until_seq, uint32_t batch,
                           uint64_t max_spins, int verify) {
  cc_ring_t *r = c->ring;
  uint64_t cap = (uint64_t)r->mtu * batch;
  uint8_t *out = malloc(cap + 1);
  uint32_t *lens = malloc(sizeof(uint32_t) * batch);
  uint64_t *seqs = malloc(sizeof(uint64_t) * batch);
  uint64_t *sigs = malloc(sizeof(uint64_t) * batch);
  uint64_t bad = 0, spins = 0;
  uint64_t last = c->seq - 1;
  int have_last = 0;
  if (!out || !lens || !seqs || !sigs) {
    bad = UINT64_MAX;
    goto done;
  }
  while (seq_diff(c->seq, until_seq) < 0 && spins < max_spins) {
    uint32_t n = cc_drain_batch(c, out, cap, lens, seqs, sigs, batch);
    if (!n) {
      spins++;
      sched_yield();
      continue;
    }
    if (!verify) continue;
    uint64_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
      if (have_last && seq_diff(seqs[i], last) <= 0) bad++;
      last = seqs[i];
      have_last = 1;
      if (sigs[i] != (seqs[i] ^ CC_SIG_KEY)) bad++;
      uint8_t b = (uint8_t)(seqs[i] * 131);
      for (uint32_t j = 0; j < lens[i]; j++)
        if (out[off + j] != (uint8_t)(b + j)) {
          bad++;
          break;
        }
      off += lens[i];
    }
  }
done:
  free(out); free(lens); free(seqs); free(sigs);
  return bad;
}
