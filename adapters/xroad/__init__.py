"""The X-Road channel (X-Road message protocol v4.0, SOAP 1.1): envelopes
(:mod:`.envelope`), identifiers (:mod:`.identifiers`), the register of X-Road clients
(:mod:`.members`), idempotent receipt (:mod:`.inbound`) and outbound requests through
the outbox (:mod:`.outbound`)."""
