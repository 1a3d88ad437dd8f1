"""Checkpoint conversion and inspection (Python 3 only); what must also run in Python 2.7
is in the top-level pose_train_py27 package."""
