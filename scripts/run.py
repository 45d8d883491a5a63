"""Run the study: `python scripts/run.py [group=option key=value ...]`, or sweep with `-m impl=a,b init=c,d`."""

from backprop_lab.cli.entry import main

if __name__ == "__main__":
    main()
