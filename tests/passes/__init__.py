"""Tests of the pass library, one file per pass."""
