"""The trust layer's per-request policy (gateway.policy.trust)."""

from __future__ import annotations

import gc
import weakref

from gateway.audit.log import now_micros
from gateway.policy import Requester
from gateway.policy.trust import TrustPolicy
from gateway.store.database import Database


def test_a_request_policy_is_freed_without_the_cyclic_collector(database: Database) -> None:
    """A policy whose consent grants were looked up forms no reference cycle: reference
    counting frees it when the request ends (a cycle per request kept the collector busy
    in every serving process)."""
    requester = Requester(
        client_id="pirha-app", organization="pirha", purpose="care-coordination", scopes=()
    )
    gc.disable()
    try:
        policy = TrustPolicy(database, requester, now_micros())
        assert policy.grants("client-1") == []
        freed = weakref.ref(policy)
        del policy
        assert freed() is None
    finally:
        gc.enable()
