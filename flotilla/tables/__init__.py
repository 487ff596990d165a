"""Changelog-backed Faust tables: the scheduler's state, each table owned by one agent."""
