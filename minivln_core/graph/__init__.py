"""minivln_core.graph"""
