"""minivln_core.perception"""
