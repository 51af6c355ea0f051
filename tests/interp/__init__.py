"""Tests of the reference interpreter (qcc/interp) and qcc verify/run."""
