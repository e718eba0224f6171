"""The qwq command line (typer)."""
