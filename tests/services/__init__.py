"""Real services the tests start on loopback (engines, servers), as plain context managers.

Fixtures live in the conftest.py of the test directories that use them; these modules only know how to
install-check, start, wait for and stop one kind of service, so several test areas can share them.
"""
