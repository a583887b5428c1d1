"""clutchcall.prod.model: the model leg (OpenAI Realtime client) and the embedded reference model.

``ModelLeg`` / ``ModelLegConfig`` (client.py) drive a speech-to-speech model with
client-managed turns; ``ReferenceModelServer`` / ``ModelServerConfig`` (server.py) are the
loopback model that ``serve`` and ``demo`` use by default.
"""

from clutchcall.prod.model.client import AudioChunk, ModelLeg, ModelLegConfig
from clutchcall.prod.model.protocol import ModelProtocolError, ModelServerError
from clutchcall.prod.model.server import ModelServerConfig, ReferenceModelServer

__all__ = [
           "AudioChunk",
           "ModelLeg",
           "ModelLegConfig",
           "ModelProtocolError",
           "ModelServerConfig",
           "ModelServerError",
           "ReferenceModelServer",
]
