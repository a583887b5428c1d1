"""ClutchCall: a turn-taking gateway for speech-to-speech voice agents.

The distribution's subpackages are the repository's top-level folders:
``clutchcall.engine`` (the pure turn engine), ``clutchcall.sim`` (the simulator),
``clutchcall.prod`` (the production edge), ``clutchcall.native`` (the C data plane) and
``clutchcall.traces`` (trace format and corpus). See docs/architecture.md for the map.
"""

__version__ = "0.1.0"
