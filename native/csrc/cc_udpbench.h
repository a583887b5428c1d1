/* cc_udpbench: a C load generator for UDP echo benchmarks and tests (plain syscalls).
 * Keeps `window` datagrams of `sz` bytes in flight to dst, sending a new one for each echo
 * received (sendmmsg/recvmmsg in batches), until `total` echoes came back or no echo arrived
 * for idle_ms. A window with no echo for 20 ms is presumed lost and sent again; its late
 * echoes, if any, still count. Returns echoes received (>= 0) or -errno. Each payload
 * carries its index.
 * *active_us gets the time from start to the last echo received (excludes the idle tail). */
#ifndef CC_UDPBENCH_H
#define CC_UDPBENCH_H
#include <stdint.h>
int64_t cc_udp_blast(int fd, const uint8_t *dst, uint32_t dstlen, uint64_t total,
                     uint32_t window, uint32_t sz, int idle_ms, uint64_t *active_us);
/* Sends `total` datagrams of `sz` bytes to dst as fast as the socket takes them (sendmmsg in
 * batches; when the socket is full, waits for POLLOUT up to 1 ms), with no flow control: a
 * one-way stream that saturates the receiver (what it cannot take is dropped by the kernel).
 * Returns datagrams sent (>= 0) or -errno; *elapsed_us gets the sending time. */
int64_t cc_udp_flood(int fd, const uint8_t *dst, uint32_t dstlen, uint64_t total, uint32_t sz,
                     uint64_t *elapsed_us);
#endif
