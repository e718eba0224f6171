"""Alerting: rules → alerts → dedup, inhibition, silences, routing and grouping → notifications, incidents."""
