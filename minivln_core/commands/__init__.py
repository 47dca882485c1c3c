"""Subcommands of `minivln` (one module each, registered in minivln_core.cli)."""
