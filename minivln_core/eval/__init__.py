"""minivln_core.eval"""
