"""The ground floor: what every other package may use and that imports nothing of the project's.

errors.py (the project's exception types), names.py (metric and tag names, stated once), streams.py (text the lab
did not write, made safe to print), redaction.py (secrets masked), stop.py (stopping honestly on a signal),
tables.py (plain tables and their markdown), collector_pause.py, code_files.py (a learner's file: its path and hash).
Add here only what needs nothing above it: no torch at import, no MLflow, no config.
"""
