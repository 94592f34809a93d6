"""The daemon: scheduling, topics, alert outbox, notifiers and the `monitor` CLI."""
