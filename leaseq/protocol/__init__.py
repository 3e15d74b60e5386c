"""The Redis protocol: key names, the Lua transitions, the codec, the ack transaction,
validation, :class:`~leaseq.Queue` and the read-only views over a queue's keys.

It knows nothing of the worker runtime, the command line or the test kit (see
``docs/architecture.md``). Import public names from :mod:`leaseq`.
"""
