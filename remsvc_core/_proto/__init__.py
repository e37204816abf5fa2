"""Stubs generated from proto/RemSvc.proto at build time (see hatch_build.py)."""
