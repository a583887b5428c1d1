"""clutchcall.traces"""
