"""`python -m backprop_lab [group=option key=value ...]`: the study's entry point, as `scripts/run.py`."""

from backprop_lab.cli.entry import main

main()
