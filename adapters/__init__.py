"""Adapters: one package per counterpart wire format (X-Road SOAP, CDA, HL7 v2), each
mapping its messages to FHIR Bundles handed to the service layer."""
