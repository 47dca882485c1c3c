"""minivln_core.train"""
