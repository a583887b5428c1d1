/* XDP program of the AF_XDP path: redirect IPv4 UDP datagrams for one destination port to the
 * AF_XDP socket bound to the receiving queue; pass everything else (ARP, ICMP, other ports)
 * to the kernel stack untouched. The port (network byte order) is set by user space in
 * cfg_map[0] after loading. Built with: clang -O2 -g -target bpf -c (see clutchcall.native.xdp).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, __u32);
} xsks_map SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} cfg_map SEC(".maps");

SEC("xdp")
int xdp_udp_redirect(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end || eth->h_proto != __builtin_bswap16(ETH_P_IP)) return XDP_PASS;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl < 5) return XDP_PASS;
  if (ip->frag_off & __builtin_bswap16(0x3fff)) return XDP_PASS; /* fragments: kernel */
  struct udphdr *udp = (void *)ip + ip->ihl * 4;
  if ((void *)(udp + 1) > end) return XDP_PASS;
  __u32 key = 0;
  __u32 *port = bpf_map_lookup_elem(&cfg_map, &key);
  if (!port || udp->dest != (__u16)*port) return XDP_PASS;
  return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
