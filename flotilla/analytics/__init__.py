"""The analytics store: the log's history in a DuckDB file, for SQL and notebooks.

``tables`` defines the tables; ``rows`` turns a batch of log records into their rows (job
and run state through the one fold, ``flotilla.jobs.state``); ``store`` keeps them in DuckDB
with the log position they reached, in one transaction; ``sink`` reads the log into it;
``views`` holds the operators' views; ``query`` answers read-only SQL while the sink writes;
``service`` is the ``flotilla analytics`` process and its rebuild.
"""
