"""Unit tests: no I/O. Hypothesis keeps no example database (nothing written under the
checkout) and has no per-example deadline (a loaded CI machine is not a failure)."""

from hypothesis import settings

settings.register_profile("perisai-unit", database=None, deadline=None)
settings.load_profile("perisai-unit")
