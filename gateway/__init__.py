"""Silta: interoperability gateway over FHIR R4."""

__version__ = "0.1.0"
