"""Every job pose-train runs, each declared once (see spec.py for what is derived from it).

A new job is a new ``Job(...)`` in one of these modules and its entry function; a new flag is
one ``Field(...)`` line.
"""
from pose_train.jobs import checkpoint_jobs, dope, host, keypoints
from pose_train.jobs.spec import (HOST, IN, LEGACY, MODERN, OUT, OUT_FILE, Field, Job,
                                  check_inputs, command_words, continue_line, finish, resolve,
                                  resolve_entry, to_argv)
from pose_train.jobs.spec import namespace as _namespace

JOBS = {j.name: j for j in dope.JOBS + keypoints.JOBS + checkpoint_jobs.JOBS + host.JOBS}


def namespace(job_name, **given):
    """The checked namespace job ``job_name`` receives, from keyword arguments in any spelling."""
    return _namespace(JOBS[job_name], **given)


__all__ = ["JOBS", "HOST", "IN", "LEGACY", "MODERN", "OUT", "OUT_FILE", "Field", "Job",
           "check_inputs", "command_words", "continue_line", "finish", "namespace", "resolve",
           "resolve_entry", "to_argv"]
