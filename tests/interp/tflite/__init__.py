"""Tests of the TFLite interpreter profiles against LiteRT."""
