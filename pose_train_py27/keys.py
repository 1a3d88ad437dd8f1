# -*- coding: utf-8 -*-
"""State-dict key prefixes: the one helper both runtimes use.

DataParallel / DistributedDataParallel save every key under ``module.``; DOPE's ROS node
loads into a DataParallel network, so its files need the prefix, while kp6d's and
AlphaPose's code load bare keys.
"""
from __future__ import absolute_import

import collections

DP_PREFIX = "module."


def strip_prefix(state_dict, prefix=DP_PREFIX):
    """Drop ``prefix`` from every key that has it (others are kept), order kept."""
    return collections.OrderedDict(
        (k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state_dict.items())


def add_prefix(state_dict, prefix=DP_PREFIX):
    """Add ``prefix`` to every key that lacks it, order kept."""
    return collections.OrderedDict(
        (k if k.startswith(prefix) else prefix + k, v) for k, v in state_dict.items())
