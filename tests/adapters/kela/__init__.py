"""Tests of the Kela adapter (adapters/kela)."""
