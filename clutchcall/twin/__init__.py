"""The twin check: the real edge over an emulated WAN against the simulator's prediction.

``clutchcall.twin.edge`` runs the real edge (both ingresses, the per-call pipeline, the
embedded model) inside a namespace; ``clutchcall.twin.caller`` places real calls from the
other; ``clutchcall.twin.cmd_twin_check`` orchestrates both over :mod:`clutchcall.netem`, runs the
simulator on the same calls and compares (``clutchcall twin check``).
"""
