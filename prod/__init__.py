"""clutchcall.prod"""
