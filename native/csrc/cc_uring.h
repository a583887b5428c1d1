/* cc_uring: an io_uring UDP reactor publishing received datagrams into a cc_tango ring.
 *
 * Theory of operation
 * -------------------
 * One reactor serves one UDP socket from one thread (one per shard). At start it registers a
 * provided-buffer ring by hand (liburing 2.3 lacks io_uring_setup_buf_ring: mmap the ring,
 * io_uring_register_buf_ring, io_uring_buf_ring_init/add/advance) and arms one multishot
 * recvmsg that picks buffers from it. The ring is created with
 * IORING_SETUP_SINGLE_ISSUER|IORING_SETUP_DEFER_TASKRUN when the kernel accepts them (else
 * without). An eventfd registered with the ring is signalled when completions (or, with
 * DEFER_TASKRUN, deferred work) are pending, so an asyncio loop can add_reader on it. (Polling
 * the ring fd itself misses wake-ups under DEFER_TASKRUN.)
 *
 * cc_uring_recv_batch runs deferred work, reaps up to max completions: each received datagram
 * ([28-byte sockaddr][payload]) is published into the cc_tango ring given at creation and its
 * buffer handed back to the kernel; a completion without IORING_CQE_F_MORE (e.g. -ENOBUFS when
 * buffers ran dry) re-arms the multishot recvmsg. Then the caller's consumer drains up to max
 * datagrams from the ring. Other consumers of the same ring (recorders, other threads) see the
 * same stream. Send completions free their slots.
 *
 * cc_uring_send_batch copies each datagram into a send slot (so callers may reuse their
 * buffers at once), queues one sendmsg SQE per datagram -- or, with UDP GSO, one per run of
 * equal-size datagrams to the same address (UDP_SEGMENT cmsg; the kernel splits them) -- and
 * submits them all with one io_uring_enter. When no slot is free it waits for completions.
 */
#ifndef CC_URING_H
#define CC_URING_H
#include <stdint.h>
#include "cc_tango.h"

#define CC_ADDR_SZ 28 /* sizeof(struct sockaddr_in6); a sockaddr_in fits too */

typedef struct cc_uring cc_uring_t;

typedef struct cc_uring_stats {
  uint64_t rx_pkts, rx_bytes, rx_truncated, rx_enobufs, rx_errors, rearms;
  uint64_t tx_pkts, tx_errors, tx_waits, tx_gso_sends;
  uint32_t setup_flags; /* IORING_SETUP_* flags the kernel accepted */
} cc_uring_stats_t;

/* Create a reactor on UDP socket fd. Returns NULL and sets *err to a negative errno on
 * failure (-ENOSYS / -EPERM / -EINVAL when the kernel refuses io_uring). flags: bit0 = try
 * SINGLE_ISSUER|DEFER_TASKRUN, bit1 = UDP GSO (runs of equal-size datagrams to one address go
 * out as one sendmsg with UDP_SEGMENT; turned off by itself if the device refuses). ring must have mtu >= CC_ADDR_SZ + buf_sz. */
cc_uring_t *cc_uring_new(int fd, uint32_t entries, uint32_t nbufs, uint32_t buf_sz,
                         uint32_t nsend, cc_ring_t *ring, uint32_t flags, int *err);
void cc_uring_delete(cc_uring_t *u);
int cc_uring_ring_fd(const cc_uring_t *u);
/* The eventfd registered with the ring (io_uring_register_eventfd): readable once completions
 * or deferred task work are pending. Clear it before draining (cc_uring_clear_event). */
int cc_uring_event_fd(const cc_uring_t *u);
void cc_uring_clear_event(cc_uring_t *u);
void cc_uring_get_stats(const cc_uring_t *u, cc_uring_stats_t *out);

/* Reap up to max completions into the ring (see above); then drain up to max datagrams with
 * consumer c into out/lens/addrs (addrs: CC_ADDR_SZ bytes per datagram). wait_nr > 0 blocks
 * until at least that many completions are ready. Returns datagrams drained, or -errno. */
int cc_uring_recv_batch(cc_uring_t *u, cc_consumer_t *c, uint8_t *out, uint64_t out_cap,
                        uint32_t *lens, uint8_t *addrs, uint32_t max, uint32_t wait_nr);
/* Reap completions into the ring only. Returns completions reaped or -errno. */
int cc_uring_poll(cc_uring_t *u, uint32_t max, uint32_t wait_nr);

/* Send n datagrams packed in buf (lens[i] each) to addrs[i] (CC_ADDR_SZ bytes each,
 * addrlens[i] valid bytes). Returns datagrams queued and submitted, or -errno. */
int cc_uring_send_batch(cc_uring_t *u, const uint8_t *buf, const uint32_t *lens,
                        const uint8_t *addrs, const uint32_t *addrlens, uint32_t n);

/* A pure-C echo server loop for the benchmark's reference figure: echoes every datagram back
 * until max_pkts echoed or idle_ms without traffic. Returns packets echoed or -errno. */
int64_t cc_uring_echo_loop(cc_uring_t *u, cc_consumer_t *c, uint64_t max_pkts, int idle_ms);
#endif
