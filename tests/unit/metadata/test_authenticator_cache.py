"""StoreAuthenticator's memory of successful PLAIN checks, over every metadata store with keys
the tenancy service issued: a secret that passed the slow check once is not checked slowly
again, a revoked key is refused at once even after that, a wrong secret is checked the slow
way every time, and the memory keeps at most its bound."""

from __future__ import annotations

from collections.abc import Callable

from sim.clock import VirtualClock
from sim.rng import SeededRng
from streamhouse.engine.authentication import Principal, StoreAuthenticator
from streamhouse.engine.tenancy import TenancyService
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.tenancy.keys import secret_matches
from tests.unit.metadata.builders import run

ITERATIONS = 4096
SALT = b"this process's salt"


async def _inline(work: Callable[[], str]) -> str:
    return work()


class CountedCheck:
    """The tenancy floor's slow check, counting how often it runs."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, secret_hash: str, secret: str) -> bool:
        self.calls += 1
        return secret_matches(secret_hash, secret)


def _issued(
    store: SqlMetadataStore, count: int = 1
) -> tuple[TenancyService, list[tuple[str, str]]]:
    tenancy = TenancyService(store, VirtualClock(), SeededRng(5), _inline, ITERATIONS)
    run(tenancy.create_org("acme"))
    keys = [run(tenancy.issue_key("acme")) for _ in range(count)]
    return tenancy, [(key.key_id, key.secret) for key in keys]


def test_a_revoked_key_is_refused_right_after_a_remembered_success(
    store: SqlMetadataStore,
) -> None:
    tenancy, [(key, secret)] = _issued(store)
    check = CountedCheck()
    authenticator = StoreAuthenticator(store, check, digest_salt=SALT)
    expected = Principal("acme", key, "member")
    assert run(authenticator.plain(key, secret)) == expected
    assert run(authenticator.plain(key, secret)) == expected
    assert check.calls == 1  # the second call was remembered
    run(tenancy.revoke_key(key))
    assert run(authenticator.plain(key, secret)) is None


def test_a_wrong_secret_is_never_served_from_memory(store: SqlMetadataStore) -> None:
    _, [(key, secret)] = _issued(store)
    check = CountedCheck()
    authenticator = StoreAuthenticator(store, check, digest_salt=SALT)
    assert run(authenticator.plain(key, secret)) is not None
    for _ in range(2):
        assert run(authenticator.plain(key, secret + "x")) is None
        assert run(authenticator.plain(key, "")) is None
    assert check.calls == 5  # every wrong secret took the slow check


def test_the_memory_keeps_at_most_its_bound_and_forgets_the_least_recent(
    store: SqlMetadataStore,
) -> None:
    _, [(first, first_secret), (second, second_secret)] = _issued(store, count=2)
    check = CountedCheck()
    authenticator = StoreAuthenticator(store, check, digest_salt=SALT, checked_secrets_max=1)
    run(authenticator.plain(first, first_secret))
    run(authenticator.plain(second, second_secret))  # pushes the first one out
    run(authenticator.plain(second, second_secret))
    assert check.calls == 2
    run(authenticator.plain(first, first_secret))
    assert check.calls == 3
