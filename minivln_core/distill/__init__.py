"""minivln_core.distill"""
