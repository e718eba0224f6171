"""Database collectors (postgres, mysql, redis, mongodb) against real servers started on loopback."""
