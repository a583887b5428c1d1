/* cc_uring.c: io_uring UDP reactor; see cc_uring.h for the theory of operation. */
#define _GNU_SOURCE
#include "cc_uring.h"
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UD_RECV 1ULL
#define UD_SEND_BASE (1ULL << 32)
#define UD_GSO_BASE (2ULL << 32)
#define GSO_SLOTS 32
#define GSO_MAX_SEGS 64
#define GSO_BUF (64 * 1024)
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define BGID 7

typedef struct {
  struct msghdr msg;
  struct iovec iov;
  struct sockaddr_in6 addr;
  int busy;
  uint32_t nseg; /* datagrams carried by this send (GSO: several) */
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl;
} send_slot_t;

struct cc_uring {
  struct io_uring ring;
  int fd;
  int efd; /* eventfd registered with the ring: signalled on completions / deferred work */
  uint32_t nbufs, buf_sz, nsend, defer;
  struct io_uring_buf_ring *br;
  size_t br_sz;
  uint8_t *bufs;
  struct msghdr rx_msg; /* template for multishot recvmsg: name only */
  send_slot_t *slots;
  uint8_t *send_data;
  uint32_t *free_slots;
  uint32_t nfree;
  send_slot_t gso[GSO_SLOTS]; /* UDP GSO sends: one sendmsg, many equal-size datagrams */
  uint8_t *gso_data;
  uint32_t gso_free[GSO_SLOTS];
  uint32_t ngso_free;
  int gso_on;
  int armed;
  cc_ring_t *out;
  uint8_t *stage;       /* staging for one publish batch */
  uint32_t *stage_lens;
  uint32_t stage_max;
  cc_uring_stats_t st;
};

static int arm_recv(cc_uring_t *u) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  if (!sqe) {
    io_uring_submit(&u->ring);
    sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) return -EBUSY;
  }
  io_uring_prep_recvmsg_multishot(sqe, u->fd, &u->rx_msg, MSG_TRUNC);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BGID;
  io_uring_sqe_set_data64(sqe, UD_RECV);
  u->armed = 1;
  return 0;
}

cc_uring_t *cc_uring_new(int fd, uint32_t entries, uint32_t nbufs, uint32_t buf_sz,
                         uint32_t nsend, cc_ring_t *ring, uint32_t flags, int *err) {
  *err = 0;
  if (!ring || nbufs == 0 || (nbufs & (nbufs - 1)) || nbufs > 32768 || buf_sz < 256 ||
      cc_ring_mtu(ring) < CC_ADDR_SZ + buf_sz || nsend == 0 || entries < 8) {
    *err = -EINVAL;
    return NULL;
  }
  cc_uring_t *u = calloc(1, sizeof(*u));
  if (!u) {
    *err = -ENOMEM;
    return NULL;
  }
  u->fd = fd;
  u->efd = -1;
  u->nbufs = nbufs;
  u->buf_sz = buf_sz;
  u->nsend = nsend;
  u->out = ring;
  struct io_uring_params p;
  int rc = -EINVAL;
  if (flags & 1) {
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 8;
    rc = io_uring_queue_init_params(entries, &u->ring, &p);
    if (rc == 0) u->defer = 1;
  }
  if (rc != 0) {
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 8;
    rc = io_uring_queue_init_params(entries, &u->ring, &p);
  }
  if (rc != 0) {
    free(u);
    *err = rc;
    return NULL;
  }
  u->st.setup_flags = p.flags;
  u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (u->efd < 0 || (rc = io_uring_register_eventfd(&u->ring, u->efd)) != 0) {
    *err = u->efd < 0 ? -errno : rc;
    cc_uring_delete(u);
    return NULL;
  }
  /* provided-buffer ring, registered by hand (liburing 2.3) */
  u->br_sz = (size_t)nbufs * sizeof(struct io_uring_buf);
  u->br = mmap(NULL, u->br_sz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  u->bufs = aligned_alloc(4096, ((size_t)nbufs * buf_sz + 4095) & ~(size_t)4095);
  u->slots = calloc(nsend, sizeof(send_slot_t));
  u->send_data = malloc((size_t)nsend * buf_sz);
  u->free_slots = malloc(sizeof(uint32_t) * nsend);
  u->stage_max = entries * 8;
  u->stage = malloc((size_t)u->stage_max * (CC_ADDR_SZ + buf_sz));
  u->stage_lens = malloc(sizeof(uint32_t) * u->stage_max);
  if (u->br == MAP_FAILED || !u->bufs || !u->slots || !u->send_data || !u->free_slots ||
      !u->stage || !u->stage_lens) {
    if (u->br == MAP_FAILED) u->br = NULL;
    *err = -ENOMEM;
    cc_uring_delete(u);
    return NULL;
  }
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof(reg));
  reg.ring_addr = (unsigned long)u->br;
  reg.ring_entries = nbufs;
  reg.bgid = BGID;
  rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
  if (rc != 0) {
    *err = rc;
    u->br_sz = u->br_sz; /* keep mapping for munmap in delete */
    cc_uring_delete(u);
    return NULL;
  }
  io_uring_buf_ring_init(u->br);
  int mask = io_uring_buf_ring_mask(nbufs);
  for (uint32_t i = 0; i < nbufs; i++)
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * buf_sz, buf_sz, (unsigned short)i, mask, (int)i);
  io_uring_buf_ring_advance(u->br, (int)nbufs);
  for (uint32_t i = 0; i < nsend; i++) {
    u->free_slots[i] = nsend - 1 - i;
    send_slot_t *s = &u->slots[i];
    s->iov.iov_base = u->send_data + (size_t)i * buf_sz;
    s->msg.msg_iov = &s->iov;
    s->msg.msg_iovlen = 1;
    s->msg.msg_name = &s->addr;
  }
  u->nfree = nsend;
  u->gso_data = (flags & 2) ? malloc((size_t)GSO_SLOTS * GSO_BUF) : NULL;
  u->gso_on = u->gso_data != NULL;
  for (uint32_t i = 0; u->gso_on && i < GSO_SLOTS; i++) {
    send_slot_t *s = &u->gso[i];
    u->gso_free[u->ngso_free++] = GSO_SLOTS - 1 - i;
    s->iov.iov_base = u->gso_data + (size_t)i * GSO_BUF;
    s->msg.msg_iov = &s->iov;
    s->msg.msg_iovlen = 1;
    s->msg.msg_name = &s->addr;
    s->msg.msg_control = s->ctl.buf;
    s->msg.msg_controllen = sizeof(s->ctl.buf);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&s->msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  }
  u->rx_msg.msg_namelen = CC_ADDR_SZ;
  u->rx_msg.msg_controllen = 0;
  rc = arm_recv(u);
  if (rc == 0) rc = io_uring_submit(&u->ring);
  if (rc < 0) {
    *err = rc;
    cc_uring_delete(u);
    return NULL;
  }
  return u;
}

void cc_uring_delete(cc_uring_t *u) {
  if (!u) return;
  if (u->ring.ring_fd > 0) io_uring_queue_exit(&u->ring); /* cancels the multishot recv */
  if (u->br) munmap(u->br, u->br_sz);
  if (u->efd >= 0) close(u->efd);
  free(u->bufs);
  free(u->slots);
  free(u->send_data);
  free(u->free_slots);
  free(u->gso_data);
  free(u->stage);
  free(u->stage_lens);
  free(u);
}

int cc_uring_ring_fd(const cc_uring_t *u) { return u->ring.ring_fd; }
int cc_uring_event_fd(const cc_uring_t *u) { return u->efd; }
void cc_uring_clear_event(cc_uring_t *u) {
  eventfd_t v;
  eventfd_read(u->efd, &v);
}
void cc_uring_get_stats(const cc_uring_t *u, cc_uring_stats_t *out) { *out = u->st; }

static void flush_stage(cc_uring_t *u, uint32_t *staged) {
  if (*staged) cc_publish_batch(u->out, u->stage, u->stage_lens, NULL, *staged, 0);
  *staged = 0;
}

static int reap(cc_uring_t *u, uint32_t max, uint32_t wait_nr) {
  int rc;
  if (wait_nr) {
    rc = io_uring_submit_and_wait(&u->ring, wait_nr);
  } else if (u->defer) {
    rc = io_uring_submit_and_get_events(&u->ring);
  } else {
    rc = io_uring_submit(&u->ring);
  }
  if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return rc;
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  uint32_t staged = 0, returned = 0, rearm = 0;
  uint64_t soff = 0;
  int mask = io_uring_buf_ring_mask(u->nbufs);
  io_uring_for_each_cqe(&u->ring, head, cqe) {
    if (seen >= max) break;
    seen++;
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    if (ud == UD_RECV) {
      if (!(cqe->flags & IORING_CQE_F_MORE)) rearm = 1;
      if (cqe->res < 0) {
        if (cqe->res == -ENOBUFS) u->st.rx_enobufs++;
        else u->st.rx_errors++;
        continue;
      }
      if (!(cqe->flags & IORING_CQE_F_BUFFER)) continue;
      unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
      uint8_t *buf = u->bufs + (size_t)bid * u->buf_sz;
      struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, cqe->res, &u->rx_msg);
      if (o && !(o->flags & MSG_TRUNC)) {
        uint32_t plen = io_uring_recvmsg_payload_length(o, cqe->res, &u->rx_msg);
        uint8_t *dst = u->stage + soff;
        memset(dst, 0, CC_ADDR_SZ);
        memcpy(dst, io_uring_recvmsg_name(o), o->namelen < CC_ADDR_SZ ? o->namelen : CC_ADDR_SZ);
        memcpy(dst + CC_ADDR_SZ, io_uring_recvmsg_payload(o, &u->rx_msg), plen);
        u->stage_lens[staged++] = CC_ADDR_SZ + plen;
        soff += CC_ADDR_SZ + plen;
        u->st.rx_pkts++;
        u->st.rx_bytes += plen;
      } else if (o) {
        u->st.rx_truncated++;
      } else {
        u->st.rx_errors++;
      }
      io_uring_buf_ring_add(u->br, buf, u->buf_sz, (unsigned short)bid, mask, (int)returned);
      returned++;
      if (staged == u->stage_max) {
        flush_stage(u, &staged);
        soff = 0;
      }
    } else if (ud >= UD_GSO_BASE && ud < UD_GSO_BASE + GSO_SLOTS) {
      uint32_t slot = (uint32_t)(ud - UD_GSO_BASE);
      send_slot_t *g = &u->gso[slot];
      if (cqe->res < 0) {
        u->st.tx_errors += g->nseg;
        if (cqe->res == -EIO || cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP)
          u->gso_on = 0; /* the device cannot segment: plain sendmsg from now on */
      } else {
        u->st.tx_pkts += g->nseg;
        u->st.tx_gso_sends++;
      }
      if (g->busy) {
        g->busy = 0;
        u->gso_free[u->ngso_free++] = slot;
      }
    } else if (ud >= UD_SEND_BASE && ud < UD_SEND_BASE + u->nsend) {
      uint32_t slot = (uint32_t)(ud - UD_SEND_BASE);
      if (cqe->res < 0) u->st.tx_errors++;
      else u->st.tx_pkts++;
      if (u->slots[slot].busy) {
        u->slots[slot].busy = 0;
        u->free_slots[u->nfree++] = slot;
      }
    }
  }
  io_uring_cq_advance(&u->ring, seen);
  if (returned) io_uring_buf_ring_advance(u->br, (int)returned);
  flush_stage(u, &staged);
  if (rearm) {
    u->st.rearms++;
    rc = arm_recv(u);
    if (rc < 0) return rc;
    io_uring_submit(&u->ring);
  }
  return (int)seen;
}

int cc_uring_poll(cc_uring_t *u, uint32_t max, uint32_t wait_nr) { return reap(u, max, wait_nr); }

int cc_uring_recv_batch(cc_uring_t *u, cc_consumer_t *c, uint8_t *out, uint64_t out_cap,
                        uint32_t *lens, uint8_t *addrs, uint32_t max, uint32_t wait_nr) {
  /* drain what is already in the ring first, reap only if it is empty */
  uint32_t n = cc_drain_batch(c, out, out_cap, lens, NULL, NULL, max);
  if (n == 0) {
    int rc = reap(u, max, wait_nr);
    if (rc < 0) return rc;
    n = cc_drain_batch(c, out, out_cap, lens, NULL, NULL, max);
  }
  /* split [addr][payload] records: addresses out, payloads moved down in place */
  uint64_t src = 0, dst = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t l = lens[i];
    memcpy(addrs + (size_t)i * CC_ADDR_SZ, out + src, CC_ADDR_SZ);
    memmove(out + dst, out + src + CC_ADDR_SZ, l - CC_ADDR_SZ);
    lens[i] = l - CC_ADDR_SZ;
    src += l;
    dst += l - CC_ADDR_SZ;
  }
  return (int)n;
}

/* Wait for send completions until the free list counted by *nfree has a slot; 0 or -errno. */
static int wait_for_slot(cc_uring_t *u, const uint32_t *nfree) {
  while (*nfree == 0) {
    u->st.tx_waits++;
    int rc = reap(u, UINT32_MAX, 1);
    if (rc < 0) return rc;
  }
  return 0;
}

/* A free SQE, submitting what is queued first if the submission queue is full; NULL if none. */
static struct io_uring_sqe *next_sqe(cc_uring_t *u) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  if (!sqe) {
    io_uring_submit(&u->ring);
    sqe = io_uring_get_sqe(&u->ring);
  }
  return sqe;
}

int cc_uring_send_batch(cc_uring_t *u, const uint8_t *buf, const uint32_t *lens,
                        const uint8_t *addrs, const uint32_t *addrlens, uint32_t n) {
  uint64_t off = 0;
  uint32_t i;
  for (i = 0; i < n; i++) {
    uint32_t l = lens[i];
    if (l > u->buf_sz || addrlens[i] > CC_ADDR_SZ) return -EMSGSIZE;
    if (u->gso_on && l > 0) {
      /* a run of datagrams to the same address, all of size l (the last may be shorter) */
      const uint8_t *a = addrs + (size_t)i * CC_ADDR_SZ;
      uint32_t k = i + 1;
      uint64_t tot = l;
      while (k < n && k - i < GSO_MAX_SEGS && addrlens[k] == addrlens[i] &&
             memcmp(addrs + (size_t)k * CC_ADDR_SZ, a, addrlens[i]) == 0 && lens[k] <= l &&
             lens[k] > 0 && tot + lens[k] <= 65000 - 48) {
        tot += lens[k];
        k++;
        if (lens[k - 1] < l) break;
      }
      if (k - i >= 2) {
        int rc = wait_for_slot(u, &u->ngso_free);
        if (rc < 0) return rc;
        struct io_uring_sqe *sqe = next_sqe(u);
        if (!sqe) return -EBUSY;
        uint32_t slot = u->gso_free[--u->ngso_free];
        send_slot_t *g = &u->gso[slot];
        g->busy = 1;
        g->nseg = k - i;
        memcpy(g->iov.iov_base, buf + off, tot);
        g->iov.iov_len = tot;
        memcpy(&g->addr, a, addrlens[i]);
        g->msg.msg_namelen = addrlens[i];
        uint16_t seg = (uint16_t)l;
        memcpy(CMSG_DATA(CMSG_FIRSTHDR(&g->msg)), &seg, sizeof(seg));
        io_uring_prep_sendmsg(sqe, u->fd, &g->msg, 0);
        io_uring_sqe_set_data64(sqe, UD_GSO_BASE + slot);
        off += tot;
        i = k - 1;
        continue;
      }
    }
    int rc = wait_for_slot(u, &u->nfree);
    if (rc < 0) return rc;
    struct io_uring_sqe *sqe = next_sqe(u);
    if (!sqe) return -EBUSY;
    uint32_t slot = u->free_slots[--u->nfree];
    send_slot_t *s = &u->slots[slot];
    s->busy = 1;
    memcpy(s->iov.iov_base, buf + off, l);
    s->iov.iov_len = l;
    memcpy(&s->addr, addrs + (size_t)i * CC_ADDR_SZ, addrlens[i]);
    s->msg.msg_namelen = addrlens[i];
    io_uring_prep_sendmsg(sqe, u->fd, &s->msg, 0);
    io_uring_sqe_set_data64(sqe, UD_SEND_BASE + slot);
    off += l;
  }
  int rc = io_uring_submit(&u->ring);
  if (rc < 0 && rc != -EBUSY && rc != -EAGAIN) return rc;
  return (int)i;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t cc_uring_echo_loop(cc_uring_t *u, cc_consumer_t *c, uint64_t max_pkts, int idle_ms) {
  uint32_t max = 256;
  uint64_t cap = (uint64_t)max * u->buf_sz;
  uint8_t *out = malloc(cap);
  uint32_t *lens = malloc(sizeof(uint32_t) * max);
  uint32_t *alens = malloc(sizeof(uint32_t) * max);
  uint8_t *addrs = malloc((size_t)CC_ADDR_SZ * max);
  int64_t echoed = 0;
  if (!out || !lens || !alens || !addrs) {
    echoed = -ENOMEM;
    goto done;
  }
  uint64_t last = now_ms();
  while ((uint64_t)echoed < max_pkts) {
    int n = cc_uring_recv_batch(u, c, out, cap, lens, addrs, max, 0);
    if (n < 0) {
      echoed = n;
      break;
    }
    if (n == 0) {
      if (now_ms() - last > (uint64_t)idle_ms) break;
      struct pollfd pfd = {.fd = u->efd, .events = POLLIN};
      cc_uring_clear_event(u);
      poll(&pfd, 1, 5);
      continue;
    }
    last = now_ms();
    for (int i = 0; i < n; i++)
      alens[i] = ((struct sockaddr *)(addrs + (size_t)i * CC_ADDR_SZ))->sa_family == AF_INET6
                     ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int rc = cc_uring_send_batch(u, out, lens, addrs, alens, (uint32_t)n);
    if (rc < 0) {
      echoed = rc;
      break;
    }
    echoed += n;
  }
done:
  free(out); free(lens); free(alens); free(addrs);
  return echoed;
}
