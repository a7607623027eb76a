"""Tests of the X-Road channel."""
