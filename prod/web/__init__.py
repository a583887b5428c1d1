"""The browser caller: the static page (``static/``) and the server that ships it with the
WebTransport ingress (:mod:`clutchcall.prod.web.server`)."""
