"""`python -m streamhouse` runs the `streamhouse` command."""

from streamhouse.agent import main

main()
