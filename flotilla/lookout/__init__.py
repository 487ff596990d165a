"""The Lookout view: job state in Postgres for the web UI, derived from the log."""
