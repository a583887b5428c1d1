"""clutchcall.sim"""
