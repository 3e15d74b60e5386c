"""``python -m leaseq`` runs the command line."""

from .cli.main import main

main()
