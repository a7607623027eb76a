"""Conformance suites (data) and the runner that executes them against a FHIR base URL."""
