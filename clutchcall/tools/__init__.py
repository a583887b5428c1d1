"""Commands that drive the pure core from outside it: they read the clock, pin CPUs and print.

``cmd_bench_engine`` (``clutchcall bench engine``), ``cmd_bench_audio`` (``clutchcall bench audio``),
``cmd_bench_vad`` (``clutchcall bench vad``) and
``cmd_engine_demo`` (``clutchcall engine demo``) live here, not in ``engine/``, so the sans-IO core
holds only code that never reads a clock or does I/O (docs/architecture.md §7).
"""
