/* cc_udpbench.c: UDP echo load generator; see cc_udpbench.h. */
#define _GNU_SOURCE
#include "cc_udpbench.h"
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}
static uint64_t now_ms(void) { return now_us() / 1000; }

static int send_some(int fd, const uint8_t *dst, uint32_t dstlen, uint8_t *buf, uint32_t sz,
                     uint64_t *next_idx, uint32_t count) {
  struct mmsghdr m[BATCH];
  struct iovec iov[BATCH];
  int sent_total = 0;
  while (count > 0) {
    uint32_t k = count < BATCH ? count : BATCH;
    for (uint32_t i = 0; i < k; i++) {
      uint8_t *p = buf + (size_t)i * sz;
      uint64_t idx = *next_idx + i;
      memcpy(p, &idx, sz < 8 ? sz : 8);
      iov[i].iov_base = p;
      iov[i].iov_len = sz;
      memset(&m[i], 0, sizeof(m[i]));
      m[i].msg_hdr.msg_iov = &iov[i];
      m[i].msg_hdr.msg_iovlen = 1;
      m[i].msg_hdr.msg_name = (void *)dst;
      m[i].msg_hdr.msg_namelen = dstlen;
    }
    int r = sendmmsg(fd, m, k, 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == ENOBUFS) break;
      return -errno;
    }
    *next_idx += (uint64_t)r;
    sent_total += r;
    count -= (uint32_t)r;
    if ((uint32_t)r < k) break;
  }
  return sent_total;
}

int64_t cc_udp_blast(int fd, const uint8_t *dst, uint32_t dstlen, uint64_t total,
                     uint32_t window, uint32_t sz, int idle_ms, uint64_t *active_us) {
  if (sz == 0 || sz > 65000 || window == 0) return -EINVAL;
  uint8_t *sbuf = malloc((size_t)BATCH * sz);
  uint8_t *rbuf = malloc((size_t)BATCH * 2048);
  if (!sbuf || !rbuf) {
    free(sbuf); free(rbuf);
    return -ENOMEM;
  }
  uint64_t next_idx = 0, got = 0;
  int64_t inflight = 0;
  uint64_t t0 = now_us(), last_us = t0;
  uint64_t last = now_ms(), refill = 0;
  int64_t rc = 0;
  while (got < total) {
    uint64_t can = total - got;
    int64_t room = (int64_t)window - inflight;
    if (room > 0 && (uint64_t)(inflight) < can) {
      uint64_t want = (uint64_t)room;
      if (want > can - (uint64_t)inflight) want = can - (uint64_t)inflight;
      int s = send_some(fd, dst, dstlen, sbuf, sz, &next_idx, (uint32_t)want);
      if (s < 0) { rc = s; break; }
      inflight += s;
    }
    struct mmsghdr m[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = rbuf + (size_t)i * 2048;
      iov[i].iov_len = 2048;
      memset(&m[i], 0, sizeof(m[i]));
      m[i].msg_hdr.msg_iov = &iov[i];
      m[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(fd, m, BATCH, MSG_DONTWAIT, NULL);
    if (r > 0) {
      got += (uint64_t)r;
      /* never below zero: after a refill (below) the window presumed lost may still come
       * back late (the echo server was only held up); counting those echoes against the
       * refilled window would drive inflight negative, which stops sending and refilling
       * for good, and the run would end at the idle timeout short of total */
      inflight = inflight > r ? inflight - r : 0;
      last_us = now_us();
      last = last_us / 1000;
      continue;
    }
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      rc = -errno;
      break;
    }
    uint64_t t = now_ms();
    if (t - last > (uint64_t)idle_ms) break; /* the server stopped answering */
    if (inflight > 0 && t - (last > refill ? last : refill) > 20) {
      /* nothing for 20 ms: the datagrams in flight were dropped (queue full); refill */
      inflight = 0;
      refill = t;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    poll(&pfd, 1, 2);
  }
  if (active_us) *active_us = last_us - t0;
  free(sbuf); free(rbuf);
  return rc < 0 ? rc : (int64_t)got;
}

int64_t cc_udp_flood(int fd, const uint8_t *dst, uint32_t dstlen, uint64_t total, uint32_t sz,
                     uint64_t *elapsed_us) {
  if (sz == 0 || sz > 65000) return -EINVAL;
  uint8_t *sbuf = malloc((size_t)BATCH * sz);
  if (!sbuf) return -ENOMEM;
  uint64_t next_idx = 0, t0 = now_us();
  int64_t rc = 0;
  while (next_idx < total) {
    uint64_t left = total - next_idx;
    int s = send_some(fd, dst, dstlen, sbuf, sz, &next_idx, left < BATCH ? (uint32_t)left : BATCH);
    if (s < 0) { rc = s; break; }
    if (s == 0) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      poll(&pfd, 1, 1);
    }
  }
  if (elapsed_us) *elapsed_us = now_us() - t0;
  free(sbuf);
  return rc < 0 ? rc : (int64_t)next_idx;
}
