"""The study, in the lesson's order: a package above isolation/ and impls/ (the code under test), below report/.

data.py (MNIST normalized with the training statistics), init.py, forward.py, backward.py (the check: the lab's own
code here, a learner's through isolation/), grad_check.py (node by node against autograd and the float64 truth) and
diagnosis.py (what kind of mistake), verdicts.py (the answer in words), grad_stats.py, bugs.py (the bank), theory.py
(what the init predicts), products.py (the matrix products and their work), stages.py (set-up and the small stages),
pipeline.py (one run, stage after stage), recording.py (what the stages log), figures.py, summary.py. Stages are
plain functions of the config and tensors; only recording.py and pipeline.py hand results to tracking/. Add a stage
here.
"""
