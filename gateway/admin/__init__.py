"""The admin side of the trust layer: organisations and data-sharing agreements.

Services (``organizations``, ``agreements``), the admin REST API (``api``) and the
command line (``cli``). Agreements are recorded here; the access policy enforces them.
"""
