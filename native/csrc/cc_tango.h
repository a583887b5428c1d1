/* cc_tango: mcache/dcache rings after the design of Firedancer's tango, written from scratch.
 *
 * Theory of operation
 * -------------------
 * An mcache is a power-of-two array of 32-byte metadata lines. Fragment number `seq` lives in
 * line `seq & (depth-1)` and the line is stamped with `seq` once its fields are valid. One
 * producer writes; any number of consumers read without ever blocking it.
 *
 * Publishing fragment `seq` (seqlock order):
 *   1. copy the payload into the dcache at `chunk` (chunks are 64 bytes, allocated as a compact
 *      ring sized so that the payloads of the next `depth` fragments never touch this one);
 *   2. store line.seq = seq - 1 (relaxed) -- "being written", never a valid value for the slot
 *      since the slot's previous fragment was seq - depth;
 *   3. release fence; store the other fields (relaxed atomics);
 *   4. store line.seq = seq with release.
 * Reading fragment `seq` (the consumer's expected one):
 *   1. s0 = load line.seq (acquire). s0 == seq: go on. s0 is behind seq (wrapping compare): not
 *      yet published, stop. s0 ahead of seq: the producer lapped us -> overrun.
 *   2. read the fields (relaxed), copy the payload, then acquire fence and reload line.seq.
 *      If it is still `seq`, nothing we read can belong to a later fragment (the producer marks
 *      the line before it overwrites either the line or, given the dcache sizing, the payload).
 *      Otherwise the copy may be torn: discard it and treat as overrun.
 * On overrun the consumer resynchronises to the line's newer sequence number and counts every
 * fragment in between as lost, so received + overrun == published for a consumer that ends at
 * the producer's position (exact overrun accounting).
 *
 * Flow control (optional): a ring may have up to CC_MAX_FSEQ "fseq" slots. A reliable consumer
 * registers one and publishes its next expected sequence there after each drain. The producer
 * only publishes while seq_next < min(fseq) + depth, so a reliable consumer is never overrun.
 */
#ifndef CC_TANGO_H
#define CC_TANGO_H
#include <stdint.h>

#define CC_MAX_FSEQ 16
#define CC_CHUNK_SZ 64

typedef struct cc_ring cc_ring_t;

typedef struct cc_consumer {
  cc_ring_t *ring;
  uint64_t seq;          /* next expected fragment */
  int fseq_idx;          /* -1: best effort; else its flow-control slot */
  uint64_t overrun_cnt;  /* fragments lost to overrun */
  uint64_t drained_cnt;  /* fragments delivered */
} cc_consumer_t;

cc_ring_t *cc_ring_new(uint64_t depth, uint32_t mtu, uint32_t fseq_cnt);
void cc_ring_delete(cc_ring_t *ring);
uint64_t cc_ring_depth(const cc_ring_t *ring);
uint32_t cc_ring_mtu(const cc_ring_t *ring);
uint64_t cc_ring_seq_next(const cc_ring_t *ring);
uint64_t cc_ring_data_sz(const cc_ring_t *ring);

/* Publish n fragments whose payloads are packed back to back in buf with sizes lens[i]
 * (each <= mtu); sigs may be NULL (sig = 0). ctl is stored on each line. Returns the number
 * published: n, or fewer when flow-control credits ran out, or -1 if a size exceeds mtu
 * (nothing after it is published). */
int64_t cc_publish_batch(cc_ring_t *ring, const uint8_t *buf, const uint32_t *lens,
                         const uint64_t *sigs, uint32_t n, uint16_t ctl);

/* Consumers. fseq_idx = -1 for best effort. The consumer starts at the producer's current
 * position. Returns 0, or -1 if fseq_idx is out of range or already taken. */
int cc_consumer_init(cc_consumer_t *c, cc_ring_t *ring, int fseq_idx);
void cc_consumer_fini(cc_consumer_t *c);

/* Drain up to max fragments: payloads are packed into out (capacity out_cap; a fragment that
 * does not fit ends the batch), with lens/seqs/sigs per fragment (seqs/sigs may be NULL).
 * Returns the count drained. Lost fragments are added to c->overrun_cnt. */
uint32_t cc_drain_batch(cc_consumer_t *c, uint8_t *out, uint64_t out_cap, uint32_t *lens,
                        uint64_t *seqs, uint64_t *sigs, uint32_t max);

/* Stress/bench helpers run entirely in C (called from Python threads, GIL released). */
/* Producer: publish total fragments of sz bytes in batches of batch; payload byte j of fragment
 * seq is (uint8_t)(seq * 131 + j), sig = seq ^ 0x9e3779b97f4a7c15. Spins (bounded by
 * max_spins total) when out of credits. Returns fragments published. */
uint64_t cc_stress_produce(cc_ring_t *ring, uint64_t total, uint32_t sz, uint32_t batch,
                           uint64_t max_spins, int pattern);
/* Consumer: drain until its seq reaches until_seq or max_spins empty polls; verifies every
 * payload and sig against the formula above. Returns the number of torn/corrupt fragments
 * seen (0 expected); counts land in the consumer. Also checks seqs strictly increase. */
uint64_t cc_stress_consume(cc_consumer_t *c, uint64_t until_seq, uint32_t batch,
                           uint64_t max_spins, int verify);
/* pattern/verify = 0: constant payload, no checks (benchmark mode). */
#endif
