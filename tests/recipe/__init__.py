"""Tests of the recipe language: parser, resolver, formatter, diagnostics, CLI."""
