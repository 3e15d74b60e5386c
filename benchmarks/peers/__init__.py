"""The systems drained side by side with leaseq.

Each ``*_adapter.py`` here (and ``node/bullmq_adapter.js``) is a script run in its own
environment, speaking the protocol of ``_clock.py``; ``systems.py`` is the runner's side:
which systems there are, how their environments are set up, and how a run of one is
driven and read.
"""
