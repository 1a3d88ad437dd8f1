"""DOPE's network. Defined once, in the Python-2.7 folder, because the legacy image runs the
very same class: the layout the robot loads is the layout that was trained."""
from pose_train_py27.nets import DopeNetwork

__all__ = ["DopeNetwork"]
