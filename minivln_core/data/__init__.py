"""minivln_core.data"""
