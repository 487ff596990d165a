"""The job domain: a job's state as the fold of its events, and what the scheduler does in reply."""
