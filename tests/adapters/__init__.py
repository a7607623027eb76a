"""Tests of the adapters, one package per counterpart."""
