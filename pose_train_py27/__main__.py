"""``python2.7 -m pose_train_py27 verify ...``: the legacy image's entrypoint."""
import sys

from pose_train_py27.verify import main

sys.exit(main())
