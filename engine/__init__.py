"""clutchcall.engine: the sans-IO turn engine (no clock, no I/O; time is an input)."""
