"""minivln_core.env"""
