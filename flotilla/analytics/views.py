"""The views operators query (``flotilla analytics sql``), created in the store with its tables.

Every figure is a function of the store alone: a run that has not ended counts up to the
store's clock (``store_clock``: the latest time on the log it holds), not the wall clock, so a
rebuilt store answers as the live one. Hours are UTC hours of the Unix clock.

- ``queue_usage``: per pool, hour and queue, the resource-seconds its runs held (from lease
  to end), the share they are of the pool's capacity in that hour (dominant resource, as the
  scheduler's fair share; capacity from the executors' heartbeats, or, in an hour without
  any, the usage of all queues), and its fair share: its weight (1 / priority factor, the
  queue's current definition; 1 for a queue never defined) over the weights of the queues
  active in that pool and hour (a queue is active where it ran or had a job waiting for its
  first lease, a waiting job counting in every pool of that hour).
- ``wait_times``: per queue and priority class, from submit to first lease and to first
  running: percentiles and the longest, over the jobs that got there; and how many still wait.
- ``failures``: per queue, job set, failure category and exit code: failed runs, their jobs,
  first and last failure.
- ``utilisation``: per pool, executor and hour: resource-seconds allocated to runs against
  the capacity the executor's heartbeats offered (a heartbeat counts until the next one, for
  at most ``HEARTBEAT_SPAN_SECONDS``), and their ratio.
"""

from __future__ import annotations

HEARTBEAT_SPAN_SECONDS = 30
"""How long one heartbeat's capacity counts without a next one (the default lease timeout:
an executor silent longer loses its runs)."""

GIB = 2**30


def _hour_sums(keys: str) -> str:
    """Per ``keys`` and hour, the resource-seconds of the rows of ``spans`` (``keys``, ``cpu``,
    ``memory``, ``gpu``, and the span [span_start, span_end)) within that hour. Summed per first
    hour, per last hour and per hour between of each span, before the hours are joined up:
    grouping the rows as they are costs less than expanding each into its hours first, and only
    spans of three hours or more are unnested."""
    first, last = "floor(span_start / 3600)", "floor(span_end / 3600)"

    def sums(seconds: str) -> str:
        return ", ".join(f"sum({r} * ({seconds})) AS {r}_seconds" for r in ("cpu", "memory", "gpu"))

    return f"""
        SELECT {keys}, h * 3600.0 AS hour_start, sum(cpu_seconds) AS cpu_seconds,
               sum(memory_seconds) AS memory_seconds, sum(gpu_seconds) AS gpu_seconds
        FROM (
            SELECT {keys}, {first} AS h, {sums(f"least(span_end, ({first} + 1) * 3600.0) - span_start")}
            FROM spans WHERE span_end > span_start GROUP BY ALL
            UNION ALL
            SELECT {keys}, {last} AS h, {sums(f"span_end - {last} * 3600.0")}
            FROM spans WHERE {last} > {first} AND span_end > {last} * 3600.0 GROUP BY ALL
            UNION ALL
            SELECT {keys}, h, {sums("3600.0")}
            FROM (SELECT *, unnest(range({first}::BIGINT + 1, {last}::BIGINT)) AS h
                  FROM spans WHERE {last} > {first} + 1)
            GROUP BY ALL
        ) GROUP BY ALL"""


VIEWS: dict[str, str] = {
    "store_clock": """
        SELECT greatest((SELECT coalesce(max(created), 0) FROM events),
                        (SELECT coalesce(max(created), 0) FROM capacity)) AS now""",
    "run_usage": f"""
        WITH spans AS (
            SELECT r.pool, r.executor, r.queue, r.cpu, r.memory, r.gpu, r.leased_at AS span_start,
                   CASE WHEN r.finished_at > 0 THEN r.finished_at ELSE c.now END AS span_end
            FROM runs r CROSS JOIN store_clock c WHERE r.leased_at > 0
        )
        {_hour_sums("pool, executor, queue")}""",
    "capacity_hours": f"""
        WITH spans AS (
            SELECT executor, pool, cpu, memory, gpu, created AS span_start,
                   least(coalesce(lead(created) OVER (PARTITION BY executor, pool ORDER BY created),
                                  c.now),
                         created + {HEARTBEAT_SPAN_SECONDS}) AS span_end
            FROM capacity CROSS JOIN store_clock c
        )
        {_hour_sums("executor, pool")}""",
    "queue_usage": f"""
        WITH usage AS MATERIALIZED (
            SELECT pool, queue, hour_start, sum(cpu_seconds) AS cpu_seconds,
                   sum(memory_seconds) AS memory_seconds, sum(gpu_seconds) AS gpu_seconds
            FROM run_usage GROUP BY ALL
        ),
        pool_capacity AS (
            SELECT pool, hour_start, sum(cpu_seconds) AS cpu, sum(memory_seconds) AS memory,
                   sum(gpu_seconds) AS gpu
            FROM capacity_hours GROUP BY ALL
        ),
        pool_usage AS (
            SELECT pool, hour_start, sum(cpu_seconds) AS cpu, sum(memory_seconds) AS memory,
                   sum(gpu_seconds) AS gpu
            FROM usage GROUP BY ALL
        ),
        pool_hours AS (
            SELECT pool, hour_start FROM pool_capacity UNION SELECT pool, hour_start FROM pool_usage
        ),
        spans AS (
            SELECT j.queue, j.submitted_at AS span_start,
                   coalesce(j.first_leased_at,
                            CASE WHEN j.state IN ('submitted', 'queued') THEN c.now ELSE j.updated END)
                       AS span_end
            FROM jobs j CROSS JOIN store_clock c WHERE j.submitted_at > 0
        ),
        wait_hours AS (
            SELECT DISTINCT queue, floor(span_start / 3600)::BIGINT AS first,
                   ceil(span_end / 3600)::BIGINT - 1 AS last
            FROM spans WHERE span_end > span_start
        ),
        waiting AS (
            SELECT DISTINCT queue, unnest(range(first, last + 1)) * 3600.0 AS hour_start FROM wait_hours
        ),
        active AS (
            SELECT pool, hour_start, queue FROM usage
            UNION SELECT p.pool, p.hour_start, w.queue FROM waiting w JOIN pool_hours p USING (hour_start)
        ),
        weighted AS (
            SELECT a.*, 1.0 / coalesce(q.priority_factor, 1.0) AS weight
            FROM active a LEFT JOIN queues q ON q.name = a.queue AND NOT q.deleted
        )
        SELECT w.pool, to_timestamp(w.hour_start) AS hour, w.queue,
               coalesce(u.cpu_seconds, 0) AS cpu_seconds,
               coalesce(u.memory_seconds, 0) / {GIB} AS memory_gib_seconds,
               coalesce(u.gpu_seconds, 0) AS gpu_seconds,
               coalesce(greatest(u.cpu_seconds / nullif(coalesce(pc.cpu, pu.cpu), 0),
                                 u.memory_seconds / nullif(coalesce(pc.memory, pu.memory), 0),
                                 u.gpu_seconds / nullif(coalesce(pc.gpu, pu.gpu), 0)), 0) AS share,
               w.weight / sum(w.weight) OVER (PARTITION BY w.pool, w.hour_start) AS fair_share
        FROM weighted w
        LEFT JOIN usage u USING (pool, hour_start, queue)
        LEFT JOIN pool_capacity pc USING (pool, hour_start)
        LEFT JOIN pool_usage pu USING (pool, hour_start)
        ORDER BY w.pool, w.hour_start, w.queue""",
    "wait_times": """
        SELECT queue, priority_class, count(*) AS jobs,
               count(first_leased_at) AS leased,
               count(*) FILTER (WHERE first_leased_at IS NULL AND state IN ('submitted', 'queued'))
                   AS waiting,
               quantile_cont(first_leased_at - submitted_at, 0.5) AS lease_wait_p50,
               quantile_cont(first_leased_at - submitted_at, 0.9) AS lease_wait_p90,
               quantile_cont(first_leased_at - submitted_at, 0.99) AS lease_wait_p99,
               max(first_leased_at - submitted_at) AS lease_wait_max,
               count(first_running_at) AS started,
               quantile_cont(first_running_at - submitted_at, 0.5) AS running_wait_p50,
               quantile_cont(first_running_at - submitted_at, 0.9) AS running_wait_p90,
               quantile_cont(first_running_at - submitted_at, 0.99) AS running_wait_p99,
               max(first_running_at - submitted_at) AS running_wait_max
        FROM jobs WHERE submitted_at > 0
        GROUP BY ALL ORDER BY queue, priority_class""",
    "failures": """
        SELECT queue, job_set, failure_category, failure_subcategory, exit_code,
               count(*) AS runs, count(DISTINCT job_id) AS jobs,
               to_timestamp(min(finished_at)) AS first_failed,
               to_timestamp(max(finished_at)) AS last_failed
        FROM runs WHERE state = 'failed'
        GROUP BY ALL ORDER BY runs DESC, queue, job_set, failure_category, exit_code""",
    "utilisation": """
        WITH allocated AS (
            SELECT pool, executor, hour_start, sum(cpu_seconds) AS cpu_seconds,
                   sum(memory_seconds) AS memory_seconds, sum(gpu_seconds) AS gpu_seconds
            FROM run_usage GROUP BY ALL
        )
        SELECT pool, executor, to_timestamp(hour_start) AS hour,
               coalesce(a.cpu_seconds, 0) AS allocated_cpu_seconds,
               coalesce(c.cpu_seconds, 0) AS capacity_cpu_seconds,
               coalesce(a.memory_seconds, 0) / {GIB} AS allocated_memory_gib_seconds,
               coalesce(c.memory_seconds, 0) / {GIB} AS capacity_memory_gib_seconds,
               coalesce(a.gpu_seconds, 0) AS allocated_gpu_seconds,
               coalesce(c.gpu_seconds, 0) AS capacity_gpu_seconds,
               a.cpu_seconds / nullif(c.cpu_seconds, 0) AS cpu_utilisation,
               a.memory_seconds / nullif(c.memory_seconds, 0) AS memory_utilisation
        FROM capacity_hours c FULL JOIN allocated a USING (pool, executor, hour_start)
        ORDER BY pool, executor, hour_start""".replace("{GIB}", str(GIB)),
}
"""In creation order: a view may use the ones before it."""

OPERATOR_VIEWS = ("queue_usage", "wait_times", "failures", "utilisation")


def create_statements() -> list[str]:
    return [f"CREATE OR REPLACE VIEW {name} AS {sql}" for name, sql in VIEWS.items()]
