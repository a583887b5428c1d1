"""clutchcall.prod.ingress: the caller leg edge (QUIC/MoQT and WebSocket/TLS ingress)."""
