"""The worker runtime: the claim loop, the job runner, lease renewal, batched acks, the
reaper, claim policies, handler options and the metrics they feed.

It is built on :mod:`leaseq.protocol` and never imports the command line (see
``docs/architecture.md``). Import public names from :mod:`leaseq`.
"""
