"""The Lookout database's schema as numbered migrations, applied at start and recorded in it.

Armada's shape (``armada-docs/lookout-notes.md`` section 1): a narrow ``job`` row that the
jobs table reads (fillfactor 70, since most rows are updated several times), runs in
``job_run``, the blobs (spec, errors) in side tables that list queries never touch, and a
``job_counts`` table of jobs per (queue, job set, state) that the ingester keeps in the same
transaction as the rows, so the UI's state counts need no scan. The ingester's position per
partition (``ingester_offsets``) lives here too, written with each batch (invariant 2).

Migrations only ever go forward; each runs in one transaction with its row in
``schema_migrations``. A database migrated by a newer Flotilla is refused rather than
written with an older idea of its schema.
"""

from __future__ import annotations

import logging

import psycopg

log = logging.getLogger(__name__)


class SchemaTooNew(RuntimeError):
    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the Lookout database is at schema version {found}, newer than this Flotilla knows "
            f"(version {known}); run the newer Flotilla, or point postgres.dsn at another database"
        )
        self.found = found
        self.known = known


MIGRATIONS: list[tuple[str, str]] = [
    (
        "jobs, runs, specs, errors, counts and ingester offsets",
        """
        CREATE TABLE job (
            job_id text PRIMARY KEY,
            queue text NOT NULL,
            owner text NOT NULL,
            namespace text,
            jobset text NOT NULL,
            cpu bigint NOT NULL,
            memory bigint NOT NULL,
            ephemeral_storage bigint NOT NULL,
            gpu bigint NOT NULL,
            priority double precision NOT NULL,
            priority_class text,
            submitted timestamptz NOT NULL,
            cancelled timestamptz,
            cancel_reason text,
            cancel_user text,
            state smallint NOT NULL,
            last_transition_time timestamptz NOT NULL,
            latest_run_id text,
            duplicate boolean NOT NULL DEFAULT false,
            annotations jsonb NOT NULL DEFAULT '{}'
        ) WITH (fillfactor = 70);
        CREATE INDEX job_queue_last_transition ON job (queue, last_transition_time);
        CREATE INDEX job_queue_jobset_state ON job (queue, jobset, state);
        CREATE INDEX job_queue_state_id ON job (queue, state, job_id);
        CREATE INDEX job_state ON job (state);
        CREATE INDEX job_submitted ON job (submitted DESC);
        CREATE INDEX job_jobset_pattern ON job (jobset text_pattern_ops);
        CREATE INDEX job_annotations ON job USING gin (annotations jsonb_ops) WITH (fastupdate = true);
        CREATE INDEX job_latest_run ON job (latest_run_id);
        CREATE INDEX job_queue_namespace ON job (queue, namespace);
        CREATE INDEX job_last_transition_id ON job (last_transition_time, job_id);
        CREATE INDEX job_active ON job (queue, jobset) WHERE state IN (1, 2, 3, 8);

        CREATE TABLE job_run (
            run_id text PRIMARY KEY,
            job_id text NOT NULL,
            cluster text NOT NULL,
            node text,
            pool text,
            leased timestamptz,
            pending timestamptz,
            started timestamptz,
            finished timestamptz,
            job_run_state smallint NOT NULL,
            error text,
            debug text,
            exit_code integer,
            failure_category text,
            failure_subcategory text,
            scheduler_termination_reason text
        ) WITH (fillfactor = 70);
        CREATE INDEX job_run_job ON job_run (job_id);
        CREATE INDEX job_run_node ON job_run (node);
        CREATE INDEX job_run_state_pool ON job_run (job_run_state, pool);
        CREATE INDEX job_run_cluster ON job_run (cluster, run_id);

        CREATE TABLE job_spec (
            job_id text PRIMARY KEY,
            spec bytea NOT NULL
        );
        ALTER TABLE job_spec ALTER COLUMN spec SET STORAGE EXTERNAL;

        CREATE TABLE job_error (
            job_id text PRIMARY KEY,
            error text NOT NULL
        );

        CREATE TABLE job_scheduling_report (
            job_id text PRIMARY KEY,
            reason text NOT NULL,
            reported timestamptz NOT NULL
        );

        CREATE TABLE job_counts (
            queue text NOT NULL,
            jobset text NOT NULL,
            state smallint NOT NULL,
            count bigint NOT NULL,
            PRIMARY KEY (queue, jobset, state)
        );

        CREATE TABLE ingester_offsets (
            topic text NOT NULL,
            partition integer NOT NULL,
            next_offset bigint NOT NULL,
            PRIMARY KEY (topic, partition)
        );
        """,
    ),
    (
        "the job fold's attempt and cancel request on the job row",
        # What the batch fold needs to agree with the job fold across batches: a retry is
        # the queued event of the next attempt, and a lease after a cancel request is not
        # taken. A job's attempt so far is its runs that ended by losing their lease; a
        # database written before this version never kept the retries or cancel requests
        # (its retried jobs stayed FAILED): `flotilla lookout rebuild` replays them.
        """
        ALTER TABLE job ADD COLUMN attempt integer NOT NULL DEFAULT 0,
                        ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
        UPDATE job SET attempt = r.requeues
        FROM (SELECT job_id, count(*) AS requeues FROM job_run
              WHERE job_run_state IN (8, 9) GROUP BY job_id) r
        WHERE job.job_id = r.job_id;
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)

# Every table the log fills, in the order rebuild empties them.
VIEW_TABLES = (
    "job",
    "job_run",
    "job_spec",
    "job_error",
    "job_scheduling_report",
    "job_counts",
    "ingester_offsets",
)

_LOCK_KEY = 0x10_0C_0D  # advisory lock serialising migrations between processes


def migrate(connection: psycopg.Connection) -> int:
    """Bring the database to this code's schema version; return the version. Refuses a
    database newer than the code (SchemaTooNew) and writes nothing to it."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied timestamptz NOT NULL DEFAULT now())"
        )
        row = connection.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(current, SCHEMA_VERSION)
        for version, (name, sql) in enumerate(MIGRATIONS[current:], start=current + 1):
            log.info("lookout: applying migration %d (%s)", version, name)
            connection.execute(sql)  # static SQL, several statements
            connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
    return SCHEMA_VERSION
