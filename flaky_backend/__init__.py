"""A deliberately flaky backend, to demonstrate and test the gateway.

It fails and slows down at random (from a seeded source), and ``/chaos`` lets demos and tests
change that at runtime or force the next N requests to fail.
"""
