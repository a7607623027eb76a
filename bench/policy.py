"""What the access policy costs, in process: ``python -m bench.policy --help``.

The same service calls (read by id, token search, a 20-match date search) run on one
SQLite database of Kela's data, once without the trust layer (PermitAll) and once as the
wellbeing area reading through an agreement in force — the cross-organisation path: the
SQL visibility condition, a decision per disclosed resource — and once more with the
request's access-log entry built and appended as well. No HTTP, no token: the policy's
own cost, which ``bench.run --auth on|off`` shows end to end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.data import DATE_WINDOW_HIGH, DATE_WINDOW_LOW, HETU_SYSTEM, Generator, Organizations
from bench.trust import PROVIDER, PURPOSE, RECIPIENT, Parties
from gateway.audit.log import append, request_record
from gateway.config import Settings
from gateway.policy import PermitAll, Requester
from gateway.policy.trust import TrustPolicy
from gateway.services import resources, search, transactions
from gateway.services.context import RequestContext
from gateway.services.resources import now_micros
from gateway.store.database import Database

Operation = Callable[[RequestContext], Any]


def _load(db: Database, size: int, seed: int) -> tuple[list[tuple[str, str]], list[str]]:
    settings = Settings(database_url=db.url)
    ctx = RequestContext(
        db=db, settings=settings, base_url="http://bench/fhir", policy=PermitAll(owner=PROVIDER)
    )
    gen = Generator(
        Organizations(f"Organization/{PROVIDER}", (f"Organization/{RECIPIENT}",)), seed=seed
    )
    keys: list[tuple[str, str]] = []
    hetus: list[str] = []
    while len(keys) < size:
        bundle = gen.transaction()
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                hetus.append(entry["resource"]["identifier"][0]["value"])
        result = transactions.process_bundle(ctx, body=bundle)
        for entry in result["entry"]:
            location = entry["response"]["location"].split("/_history")[0]
            kind, ident = location.rsplit("/", 2)[-2:]
            keys.append((kind, ident))
    return keys, hetus


def _operations(
    keys: list[tuple[str, str]], hetus: list[str], rng: random.Random
) -> dict[str, Operation]:
    date_query = [("authored", f"ge{DATE_WINDOW_LOW}"), ("authored", f"lt{DATE_WINDOW_HIGH}")]

    def read(ctx: RequestContext) -> Any:
        kind, ident = rng.choice(keys)
        return resources.read_resource(ctx, resource_type=kind, resource_id=ident)

    def search_token(ctx: RequestContext) -> Any:
        hetu = quote(f"{HETU_SYSTEM}|{rng.choice(hetus)}", safe=":|")
        return search.search_type(ctx, resource_type="Patient", params=[("identifier", hetu)])

    def search_date(ctx: RequestContext) -> Any:
        return search.search_type(ctx, resource_type="ServiceRequest", params=list(date_query))

    return {"read": read, "search-token": search_token, "search-date-20": search_date}


def _measure(
    db: Database, operation: Operation, mode: str, seconds: float, settings: Settings
) -> float:
    """µs per operation (median of five rounds)."""
    requester = Requester(f"{RECIPIENT}-bench", RECIPIENT, PURPOSE, ("system/*.cruds",))
    pending: list[Any] = []
    rounds: list[float] = []
    for _ in range(5):
        count = 0
        started = time.perf_counter()
        deadline = started + seconds / 5
        while time.perf_counter() < deadline:
            for _ in range(50):
                policy: Any = (
                    PermitAll() if mode == "off" else TrustPolicy(db, requester, now_micros())
                )
                ctx = RequestContext(
                    db=db, settings=settings, base_url="http://bench/fhir", policy=policy
                )
                operation(ctx)
                if mode == "policy+log":
                    pending.append(
                        request_record(
                            requester=requester,
                            action="read",
                            status=200,
                            touched=policy.touched,
                            query="GET /fhir/x",
                            at=now_micros(),
                        )
                    )
                    if len(pending) >= 500:
                        append(db, pending)
                        pending = []
                count += 1
        rounds.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__)
    parser.add_argument("--size", type=int, default=10_000, help="resources stored")
    parser.add_argument("--seconds", type=float, default=5.0, help="per operation and mode")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="silta-policy-bench-"))
    url = f"sqlite:///{workdir / 'policy.db'}"
    Parties().register(url)
    db = Database(url)
    settings = Settings(database_url=url)
    keys, hetus = _load(db, args.size, args.seed)
    print(f"{len(keys)} resources of {PROVIDER}, read by {RECIPIENT} through an agreement")
    print(
        f"{'operation':16} {'off µs':>8} {'policy µs':>10} {'cost':>6} {'+log µs':>8} {'cost':>6}"
    )
    for name, operation in _operations(keys, hetus, random.Random(args.seed)).items():
        off = _measure(db, operation, "off", args.seconds, settings)
        on = _measure(db, operation, "policy", args.seconds, settings)
        logged = _measure(db, operation, "policy+log", args.seconds, settings)
        policy_cost, log_cost = on / off - 1, logged / off - 1
        print(f"{name:16} {off:8.0f} {on:10.0f} {policy_cost:6.0%} {logged:8.0f} {log_cost:6.0%}")
    db.dispose()


if __name__ == "__main__":
    main()
