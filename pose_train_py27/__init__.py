"""Everything that must run in Python 2.7 + torch 1.4 (ROS Melodic) as well as in Python 3.

The legacy image copies this folder whole and CI byte-compiles it with python2.7, so a
module here may use only what both runtimes have: no f-strings, annotations, keyword-only
arguments or dataclasses; torch APIs that existed in 1.4; numpy 1.16. It imports nothing
from pose_train. Code that only runs in Python 3 (conversion) lives in pose_train.compat.

  nets.py            the one definition of DOPE and FastPose (both runtimes train/run these)
  legacy_format.py   reads a checkpoint's pickle without running it, before torch.load does
  verify.py          the verifier the legacy image runs: strict load as the node does + parity
"""
