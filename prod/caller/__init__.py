"""clutchcall.prod.caller: a real caller client (library and `clutchcall call`)."""
