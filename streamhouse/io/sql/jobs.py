"""SQL adapter of the jobs port: turns at cluster jobs, granted in the store's time."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from streamhouse.io.sql.schema import job_claims
from streamhouse.io.sql.store_clock import StoreClock
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.ports.jobs import JobClaims


class SqlJobClaims(SqlAdapter, JobClaims):
    """The jobs port over SQL: one transaction per claim."""

    async def claim_job(self, name: str, agent: str, interval_ms: int) -> bool:
        clock = self._sql.store_clock
        return await self._sql.write("claim_job", _claim, clock, name, agent, interval_ms)


def _claim(conn: Connection, clock: StoreClock, name: str, agent: str, interval_ms: int) -> bool:
    assert interval_ms >= 0, f"job {name!r}: interval {interval_ms} ms"
    now_ms = clock(conn)
    row = job_claims.c.name == name
    last = conn.execute(select(job_claims.c.claimed_ms).where(row).with_for_update()).first()
    if last is None:
        try:
            with conn.begin_nested():  # a savepoint: a concurrent first claim wins
                conn.execute(insert(job_claims).values(name=name, agent=agent, claimed_ms=now_ms))
        except IntegrityError:
            return False
        return True
    if 0 <= now_ms - last.claimed_ms < interval_ms:  # a store clock stepped back grants anew
        return False
    conn.execute(update(job_claims).where(row).values(agent=agent, claimed_ms=now_ms))
    return True
