"""Tests of alerting: rules, evaluation, alert states, intake, delivery and the notification pipeline."""
