"""The Kela exchange inside the gateway: the X-Road endpoint that stores what Kela sends
(``xroad.py``), and the closed loop that sends the wellbeing area's progress and
decisions back (``loop.py``). The wire formats and mappings live in ``adapters/``."""
