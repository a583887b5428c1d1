/* cc_xdp: one AF_XDP socket (copy / SKB mode) on one interface queue, with our own XDP program.
 *
 * Theory of operation
 * -------------------
 * cc_xsk_open loads the compiled XDP program (an object file built by clang), writes the UDP
 * port into its cfg map, attaches it to the interface in SKB (generic) mode with
 * bpf_xdp_attach, creates a UMEM (nframes frames of frame_sz bytes: the first half feeds the
 * fill ring for receiving, the second half is the transmit pool) and an XSK socket with
 * XDP_COPY and XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD (libxdp's dispatcher is not used), and puts
 * the socket into the program's XSKMAP at its queue index. The program redirects only IPv4 UDP
 * for that port; everything else (ARP included) reaches the kernel stack as usual.
 * Receiving copies whole Ethernet frames out of the RX ring and hands their frames straight
 * back to the fill ring. Sending copies frames into free transmit frames, submits them on the
 * TX ring, kicks the kernel with sendto, and recycles frames from the completion ring.
 * Frames are raw Ethernet: the Python side (clutchcall.native.xdp) parses and builds headers.
 */
#ifndef CC_XDP_H
#define CC_XDP_H
#include <stdint.h>

typedef struct cc_xsk cc_xsk_t;

typedef struct cc_xsk_stats {
  uint64_t rx_frames, tx_frames, tx_no_frame, fill_short;
} cc_xsk_stats_t;

cc_xsk_t *cc_xsk_open(const char *ifname, uint32_t queue, const char *bpf_obj,
                      uint16_t udp_port_host, uint32_t nframes, uint32_t frame_sz, int *err);
void cc_xsk_close(cc_xsk_t *x);
int cc_xsk_fd(const cc_xsk_t *x);
void cc_xsk_get_stats(const cc_xsk_t *x, cc_xsk_stats_t *out);
/* Copy up to max received frames into out (packed) with lens; returns count. */
int cc_xsk_recv_batch(cc_xsk_t *x, uint8_t *out, uint64_t out_cap, uint32_t *lens, uint32_t max);
/* Transmit n frames packed in buf; returns frames queued (fewer if the pool ran dry) or -errno. */
int cc_xsk_send_batch(cc_xsk_t *x, const uint8_t *buf, const uint32_t *lens, uint32_t n);

/* UDP over IPv4 framing done in C. A peer: IPv4 address (network order), port (host order),
 * MAC address. */
typedef struct cc_peer {
  uint32_t ip;
  uint16_t port;
  uint8_t mac[6];
} cc_peer_t;
/* Receive up to max UDP payloads for my_ip_be:my_port (other frames counted in *dropped):
 * payloads packed in out with lens, senders in peers. Returns the count. */
int cc_xsk_recv_udp(cc_xsk_t *x, uint32_t my_ip_be, uint16_t my_port, uint8_t *out,
                    uint64_t out_cap, uint32_t *lens, cc_peer_t *peers, uint32_t max,
                    uint64_t *dropped);
/* Build Ethernet/IPv4/UDP frames (IP checksum computed, UDP checksum 0) from my_mac/my_ip/
 * my_port to peers[i] for the n payloads packed in buf, and transmit them.
 * Returns frames queued or -errno. */
int cc_xsk_send_udp(cc_xsk_t *x, uint32_t my_ip_be, uint16_t my_port, const uint8_t *my_mac,
                    const uint8_t *buf, const uint32_t *lens, const cc_peer_t *peers, uint32_t n);
#endif
