"""`python -m tickpipe` is the `tickpipe` command."""

from tickpipe.cli import main

main()
