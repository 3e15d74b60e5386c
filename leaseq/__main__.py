"""``python -m leaseq`` runs the command line."""

from .cli import main

main()
