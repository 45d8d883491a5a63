"""The data a run reads. registry.py: the datasets, one entry each (config schema, rows, width, source, reader).
The readers, each returning a raw `Split` (split.py): mnist.py (the course's pickle), idx.py (Fashion-MNIST),
synthetic.py. What keeps a file from harming the reader: bounded_reads.py (size caps, hashing as read) and
safe_pickle.py (numpy arrays only). course_file.py fetches the course's file once into a cache.

Add a dataset here: an entry in registry.py and, if its format is new, a reader (the floor: above core/, below
config/; nothing here imports torch's nn or MLflow).
"""
