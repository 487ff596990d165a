"""The log: its wire schema, topic names, and the plain Kafka clients (writer, tail, offset-gap
handling) that every reader and writer of the log uses (the API, executors, the scheduler
service, and the views derived from the log). Nothing here knows about Faust or scheduling."""
