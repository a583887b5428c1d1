"""clutchcall.prod.edge: the production edge (ingresses + per-call pipeline + model +
metrics + recorded traces) and its commands ``serve``, ``demo`` and ``bench edge``."""

from clutchcall.prod.edge.config import EdgeConfig, EmbeddedModelConfig, load_config
from clutchcall.prod.edge.edge import Edge
from clutchcall.prod.edge.handler import CallSummary, EdgeHandler

__all__ = ["CallSummary", "Edge", "EdgeConfig", "EdgeHandler", "EmbeddedModelConfig", "load_config"]
