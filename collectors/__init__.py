"""Built-in collectors, registered through the `qwq.collectors` entry-point group."""
