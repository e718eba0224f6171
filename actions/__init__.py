"""Actions: plan/apply remediation with audit records. Arrives with issue #6."""
