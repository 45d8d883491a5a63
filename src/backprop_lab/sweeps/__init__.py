"""A multirun as one study: above report/ (its parent's description is the report's table), below cli/.

sweep.py (the Hydra callback: the jobs' outcomes, the closing line), parent.py (the parent run: counts, aggregates,
the description that leads with the answer), resume.py (a sweep started
again reuses what finished), submissions.py (a teacher's folder, a run per file). Add here what a sweep as a whole
does; what one job does belongs to study/.
"""
