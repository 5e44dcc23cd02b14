"""Tests of the examples that carry their own modules (``examples/dlgm``)."""
