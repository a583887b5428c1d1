"""clutchcall.native"""
