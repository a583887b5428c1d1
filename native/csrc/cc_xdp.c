/* cc_xdp.c: AF_XDP socket; see cc_xdp.h for the theory of operation. */
#define _GNU_SOURCE
#include "cc_xdp.h"
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/xsk.h>

struct cc_xsk {
  struct xsk_ring_prod fill, tx;
  struct xsk_ring_cons comp, rx;
  struct xsk_umem *umem;
  struct xsk_socket *xsk;
  struct bpf_object *obj;
  void *area;
  uint64_t area_sz;
  uint32_t nframes, frame_sz;
  int ifindex, attached;
  uint64_t *tx_free;
  uint32_t tx_nfree;
  cc_xsk_stats_t st;
};

static void recycle_completions(cc_xsk_t *x) {
  uint32_t idx;
  uint32_t n = xsk_ring_cons__peek(&x->comp, x->nframes, &idx);
  for (uint32_t i = 0; i < n; i++)
    x->tx_free[x->tx_nfree++] = *xsk_ring_cons__comp_addr(&x->comp, idx + i);
  if (n) xsk_ring_cons__release(&x->comp, n);
}

void cc_xsk_close(cc_xsk_t *x) {
  if (!x) return;
  if (x->xsk) xsk_socket__delete(x->xsk);
  if (x->umem) xsk_umem__delete(x->umem);
  if (x->attached) bpf_xdp_detach(x->ifindex, XDP_FLAGS_SKB_MODE, NULL);
  if (x->obj) bpf_object__close(x->obj);
  if (x->area) munmap(x->area, x->area_sz);
  free(x->tx_free);
  free(x);
}

cc_xsk_t *cc_xsk_open(const char *ifname, uint32_t queue, const char *bpf_obj,
                      uint16_t udp_port_host, uint32_t nframes, uint32_t frame_sz, int *err) {
  *err = 0;
  if (nframes < 16 || (nframes & (nframes - 1)) || (frame_sz != 2048 && frame_sz != 4096)) {
    *err = -EINVAL;
    return NULL;
  }
  cc_xsk_t *x = calloc(1, sizeof(*x));
  if (!x) {
    *err = -ENOMEM;
    return NULL;
  }
  x->nframes = nframes;
  x->frame_sz = frame_sz;
  x->ifindex = (int)if_nametoindex(ifname);
  int rc;
  if (!x->ifindex) {
    rc = -ENODEV;
    goto fail;
  }
  x->obj = bpf_object__open_file(bpf_obj, NULL);
  if (!x->obj || libbpf_get_error(x->obj)) {
    x->obj = NULL;
    rc = -ENOENT;
    goto fail;
  }
  if ((rc = bpf_object__load(x->obj)) != 0) goto fail;
  struct bpf_program *prog = bpf_object__find_program_by_name(x->obj, "xdp_udp_redirect");
  int xsks_fd = bpf_object__find_map_fd_by_name(x->obj, "xsks_map");
  int cfg_fd = bpf_object__find_map_fd_by_name(x->obj, "cfg_map");
  if (!prog || xsks_fd < 0 || cfg_fd < 0) {
    rc = -ENOENT;
    goto fail;
  }
  uint32_t key = 0, port = htons(udp_port_host);
  if ((rc = bpf_map_update_elem(cfg_fd, &key, &port, 0)) != 0) goto fail;
  if ((rc = bpf_xdp_attach(x->ifindex, bpf_program__fd(prog), XDP_FLAGS_SKB_MODE, NULL)) != 0)
    goto fail;
  x->attached = 1;
  x->area_sz = (uint64_t)nframes * frame_sz;
  x->area = mmap(NULL, x->area_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (x->area == MAP_FAILED) {
    x->area = NULL;
    rc = -ENOMEM;
    goto fail;
  }
  struct xsk_umem_config ucfg = {.fill_size = nframes / 2, .comp_size = nframes / 2,
                                 .frame_size = frame_sz, .frame_headroom = 0, .flags = 0};
  if ((rc = xsk_umem__create(&x->umem, x->area, x->area_sz, &x->fill, &x->comp, &ucfg)) != 0)
    goto fail;
  struct xsk_socket_config scfg;
  memset(&scfg, 0, sizeof(scfg));
  scfg.rx_size = nframes / 2;
  scfg.tx_size = nframes / 2;
  scfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
  scfg.xdp_flags = XDP_FLAGS_SKB_MODE;
  scfg.bind_flags = XDP_COPY;
  if ((rc = xsk_socket__create(&x->xsk, ifname, queue, x->umem, &x->rx, &x->tx, &scfg)) != 0)
    goto fail;
  if ((rc = xsk_socket__update_xskmap(x->xsk, xsks_fd)) != 0) goto fail;
  /* first half of the frames: receive (fill ring); second half: transmit pool */
  uint32_t idx;
  uint32_t half = nframes / 2;
  if (xsk_ring_prod__reserve(&x->fill, half, &idx) != half) {
    rc = -ENOSPC;
    goto fail;
  }
  for (uint32_t i = 0; i < half; i++)
    *xsk_ring_prod__fill_addr(&x->fill, idx + i) = (uint64_t)i * frame_sz;
  xsk_ring_prod__submit(&x->fill, half);
  x->tx_free = malloc(sizeof(uint64_t) * nframes);
  if (!x->tx_free) {
    rc = -ENOMEM;
    goto fail;
  }
  for (uint32_t i = half; i < nframes; i++) x->tx_free[x->tx_nfree++] = (uint64_t)i * frame_sz;
  return x;
fail:
  *err = rc < 0 ? rc : -rc;
  if (*err == 0) *err = -EINVAL;
  cc_xsk_close(x);
  return NULL;
}

int cc_xsk_fd(const cc_xsk_t *x) { return xsk_socket__fd(x->xsk); }
void cc_xsk_get_stats(const cc_xsk_t *x, cc_xsk_stats_t *out) { *out = x->st; }

int cc_xsk_recv_batch(cc_xsk_t *x, uint8_t *out, uint64_t out_cap, uint32_t *lens, uint32_t max) {
  uint32_t idx_rx, idx_fill;
  uint32_t n = xsk_ring_cons__peek(&x->rx, max, &idx_rx);
  if (!n) return 0;
  uint64_t off = 0;
  uint32_t i;
  uint64_t addrs[n];
  for (i = 0; i < n; i++) {
    const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx_rx + i);
    addrs[i] = xsk_umem__extract_addr(d->addr);
    uint32_t l = d->len;
    if (off + l > out_cap) l = 0; /* caller's buffer full: drop (sized to avoid) */
    memcpy(out + off, xsk_umem__get_data(x->area, d->addr), l);
    lens[i] = l;
    off += l;
  }
  xsk_ring_cons__release(&x->rx, n);
  /* hand the frames straight back to the kernel */
  uint32_t got = xsk_ring_prod__reserve(&x->fill, n, &idx_fill);
  if (got != n) x->st.fill_short++;
  for (i = 0; i < got; i++) *xsk_ring_prod__fill_addr(&x->fill, idx_fill + i) = addrs[i];
  xsk_ring_prod__submit(&x->fill, got);
  x->st.rx_frames += n;
  return (int)n;
}

int cc_xsk_send_batch(cc_xsk_t *x, const uint8_t *buf, const uint32_t *lens, uint32_t n) {
  recycle_completions(x);
  uint32_t can = n < x->tx_nfree ? n : x->tx_nfree;
  uint32_t idx;
  if (can) can = xsk_ring_prod__reserve(&x->tx, can, &idx);
  uint64_t off = 0;
  for (uint32_t i = 0; i < can; i++) {
    uint64_t addr = x->tx_free[--x->tx_nfree];
    uint32_t l = lens[i] > x->frame_sz ? x->frame_sz : lens[i];
    memcpy(xsk_umem__get_data(x->area, addr), buf + off, l);
    struct xdp_desc *d = xsk_ring_prod__tx_desc(&x->tx, idx + i);
    d->addr = addr;
    d->len = l;
    off += lens[i];
  }
  if (can) {
    xsk_ring_prod__submit(&x->tx, can);
    if (sendto(xsk_socket__fd(x->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN &&
        errno != EBUSY && errno != ENOBUFS)
      return -errno;
  }
  x->st.tx_frames += can;
  if (can < n) x->st.tx_no_frame += n - can;
  recycle_completions(x);
  return (int)can;
}

static uint16_t ip_csum(const uint8_t *h) {
  uint32_t s = 0;
  for (int i = 0; i < 20; i += 2) s += (uint32_t)(h[i] << 8 | h[i + 1]);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

int cc_xsk_recv_udp(cc_xsk_t *x, uint32_t my_ip_be, uint16_t my_port, uint8_t *out,
                    uint64_t out_cap, uint32_t *lens, cc_peer_t *peers, uint32_t max,
                    uint64_t *dropped) {
  uint32_t idx_rx, idx_fill;
  uint32_t n = xsk_ring_cons__peek(&x->rx, max, &idx_rx);
  if (!n) return 0;
  uint64_t off = 0;
  uint32_t k = 0, i;
  uint64_t addrs[n];
  for (i = 0; i < n; i++) {
    const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx_rx + i);
    addrs[i] = xsk_umem__extract_addr(d->addr);
    const uint8_t *f = xsk_umem__get_data(x->area, d->addr);
    uint32_t len = d->len;
    if (len < 42 || f[12] != 0x08 || f[13] != 0x00 || f[14] != 0x45 || f[23] != 17 ||
        memcmp(f + 30, &my_ip_be, 4) != 0) {
      (*dropped)++;
      continue;
    }
    uint32_t total = (uint32_t)(f[16] << 8 | f[17]);
    uint16_t dport = (uint16_t)(f[36] << 8 | f[37]);
    uint32_t ulen = (uint32_t)(f[38] << 8 | f[39]);
    if (dport != my_port || ulen < 8 || 34 + ulen > len || 14 + total > len ||
        off + (ulen - 8) > out_cap) {
      (*dropped)++;
      continue;
    }
    memcpy(out + off, f + 42, ulen - 8);
    lens[k] = ulen - 8;
    memcpy(&peers[k].ip, f + 26, 4);
    peers[k].port = (uint16_t)(f[34] << 8 | f[35]);
    memcpy(peers[k].mac, f + 6, 6);
    off += ulen - 8;
    k++;
  }
  xsk_ring_cons__release(&x->rx, n);
  uint32_t got = xsk_ring_prod__reserve(&x->fill, n, &idx_fill);
  if (got != n) x->st.fill_short++;
  for (i = 0; i < got; i++) *xsk_ring_prod__fill_addr(&x->fill, idx_fill + i) = addrs[i];
  xsk_ring_prod__submit(&x->fill, got);
  x->st.rx_frames += n;
  return (int)k;
}

int cc_xsk_send_udp(cc_xsk_t *x, uint32_t my_ip_be, uint16_t my_port, const uint8_t *my_mac,
                    const uint8_t *buf, const uint32_t *lens, const cc_peer_t *peers, uint32_t n) {
  recycle_completions(x);
  uint32_t fit = 0;
  for (uint32_t i = 0; i < n; i++) fit += lens[i] + 42 <= x->frame_sz;
  uint32_t can = fit < x->tx_nfree ? fit : x->tx_nfree;
  uint32_t idx = 0;
  if (can) can = xsk_ring_prod__reserve(&x->tx, can, &idx);
  uint64_t off = 0;
  static uint16_t ip_id;
  uint32_t q = 0;
  for (uint32_t i = 0; i < n && q < can; i++) {
    uint32_t l = lens[i];
    const uint8_t *payload = buf + off;
    off += l;
    if (l + 42 > x->frame_sz) continue; /* too large for one frame: skip */
    uint64_t addr = x->tx_free[--x->tx_nfree];
    uint8_t *f = xsk_umem__get_data(x->area, addr);
    memcpy(f, peers[i].mac, 6);
    memcpy(f + 6, my_mac, 6);
    f[12] = 0x08;
    f[13] = 0x00;
    uint8_t *ip = f + 14;
    uint16_t tot = (uint16_t)(28 + l);
    ip_id++;
    ip[0] = 0x45; ip[1] = 0;
    ip[2] = (uint8_t)(tot >> 8); ip[3] = (uint8_t)tot;
    ip[4] = (uint8_t)(ip_id >> 8); ip[5] = (uint8_t)ip_id;
    ip[6] = 0x40; ip[7] = 0; /* DF */
    ip[8] = 64; ip[9] = 17;
    ip[10] = 0; ip[11] = 0;
    memcpy(ip + 12, &my_ip_be, 4);
    memcpy(ip + 16, &peers[i].ip, 4);
    uint16_t c = ip_csum(ip);
    ip[10] = (uint8_t)(c >> 8); ip[11] = (uint8_t)c;
    uint8_t *u = ip + 20;
    u[0] = (uint8_t)(my_port >> 8); u[1] = (uint8_t)my_port;
    u[2] = (uint8_t)(peers[i].port >> 8); u[3] = (uint8_t)peers[i].port;
    u[4] = (uint8_t)((8 + l) >> 8); u[5] = (uint8_t)(8 + l);
    u[6] = 0; u[7] = 0; /* no UDP checksum (allowed over IPv4) */
    memcpy(u + 8, payload, l);
    struct xdp_desc *d = xsk_ring_prod__tx_desc(&x->tx, idx + q);
    d->addr = addr;
    d->len = 42 + l;
    q++;
  }
  if (q) {
    xsk_ring_prod__submit(&x->tx, q);
    if (sendto(xsk_socket__fd(x->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN &&
        errno != EBUSY && errno != ENOBUFS)
      return -errno;
  }
  x->st.tx_frames += q;
  if (q < n) x->st.tx_no_frame += n - q;
  recycle_completions(x);
  return (int)q;
}
