"""The loopback X-Road security server the tests use as a counterpart; it lives in
:mod:`adapters.xroad.loopback`."""

from __future__ import annotations

from adapters.xroad.loopback import Failure, ReceivedRequest
from adapters.xroad.loopback import LoopbackSecurityServer as FakeSecurityServer

__all__ = ["Failure", "FakeSecurityServer", "ReceivedRequest"]
