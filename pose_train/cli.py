"""pose-train command line, built from the job declarations in pose_train.jobs.

Run on the host, a job command starts the right Docker image and runs itself there with
``--local``; inside an image (or with ``--local``) it runs in this process.

The parser is argparse rather than python-fire: fire reads every value as a Python literal
before the program sees it (``--seq 01`` arrives as 1, ``--object 1e3`` as 1000.0), keeps only
the last of a repeated flag and has no aliases, so each job needed hand-written patches.
argparse hands over the user's text, so each field's declaration alone decides its type,
spellings and errors.
"""
import argparse
import contextlib
import os
import shlex
import signal
import sys

from pose_train.errors import Interrupted, UserError, interrupt_exit_code
from pose_train_py27.errors import InputError
from pose_train.jobs import HOST, JOBS, finish, resolve_entry
from pose_train.jobs.spec import coerce, for_runtime, help_default
from pose_train.training.signals import handled
from pose_train import __version__, environment

GROUPS = {
    "train": "train a network (modern image)",
    "validate": "check a dataset before training",
    "synth": "write synthetic datasets (no download needed)",
    "prepare": "prepare training annotations",
    "eval": "evaluate trained networks",
    "infer": "run trained networks on images (either runtime)",
    "images": "build and list the runtime images",
    "export": "export weights for other runtimes (ONNX)",
}
_METAVAR = {"int": "N", "float": "X", "seq": "SEQ", "path": "PATH", "str": "TEXT"}


class _Parser(argparse.ArgumentParser):
    """Every parse error becomes one UserError line (the CLI's one error boundary prints it)."""

    def error(self, message):
        raise UserError("%s (see %s --help)" % (message, self.prog))


class _Help(argparse.RawDescriptionHelpFormatter):
    """One line per flag: every spelling, then the value's form once."""

    def _format_action_invocation(self, action):
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        return "%s %s" % (", ".join(action.option_strings), self._metavar_formatter(
            action, action.dest.upper())(1)[0])


class _Store(argparse.Action):
    """Coerce with the field's own rules, naming the spelling the user typed."""

    def __call__(self, parser, namespace, values, option_string=None):
        f, spelling = self.pt_field, option_string or self.pt_field.name.upper()
        if f.many:
            values = values if isinstance(values, list) else [values]   # WEIGHTS... as a list
            setattr(namespace, f.name, getattr(namespace, f.name, [])
                    + [coerce(f, v, spelling) for v in values])
            return
        value = self.const if f.type == "bool" else coerce(f, values, spelling)
        if hasattr(namespace, f.name) and getattr(namespace, f.name) != value:
            # The last one wins, as in most CLIs: compose's entrypoints put defaults first and
            # the user's flags after them. Said, because a second --data here is no second set.
            print("pose-train: note: %s given twice; using the last, %s" % (spelling, value),
                  file=sys.stderr)
        setattr(namespace, f.name, value)


def _add_field(parser, f):
    kwargs = dict(dest=f.name, default=argparse.SUPPRESS, action=_Store)
    if f.type == "bool":
        kwargs.update(nargs=0, const=True)
        negated = parser.add_argument(*["--no-" + s[2:] for s in f.spellings()],
                                      help=argparse.SUPPRESS, **dict(kwargs, const=False))
        negated.pt_field = f
    else:
        kwargs["metavar"] = "|".join(f.choices) if f.choices else _METAVAR[f.type]
    text = f.help + help_default(f) + (" (repeatable)" if f.many else "")
    if f.positional:
        positional = {k: v for k, v in kwargs.items() if k != "dest"}
        pos = parser.add_argument(f.name, nargs="*" if f.many else "?", help=text,
                                  **dict(positional, metavar=f.name.upper()))
        pos.pt_field = f
        text = argparse.SUPPRESS   # --src also works (the container's command line uses it)
    action = parser.add_argument(*f.spellings(), help=text, **kwargs)
    action.pt_field = f


def _add_globals(parser, top):
    default = False if top else argparse.SUPPRESS
    parser.add_argument("--local", action="store_true", default=default,
                        help="run in this process, not in a container" if top else argparse.SUPPRESS)
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        default=default, help="print the docker command, run nothing" if top
                        else argparse.SUPPRESS)
    parser.add_argument("--stop-wait", "--stop_wait", dest="stop_wait", type=float,
                        default=None if top else argparse.SUPPRESS, metavar="S",
                        help="after Ctrl-C, wait this long for the job to save (default 600)"
                        if top else argparse.SUPPRESS)


def build_parser():
    root = _Parser(prog="pose-train", allow_abbrev=False,
                   description="Train 6D object-pose networks on a modern GPU, run them on ROS "
                               "Melodic.", epilog=environment.help_section(),
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_globals(root, top=True)
    root.add_argument("--version", action="version", version="pose-train %s" % __version__)
    words = root.add_subparsers(dest="_command", metavar="COMMAND", required=True,
                                parser_class=_Parser)
    groups = {}
    for job in JOBS.values():
        first = job.words[0]
        if len(job.words) == 1:
            leaf = words.add_parser(first, help=_summary(job), description=job.help,
                                    formatter_class=_Help, allow_abbrev=False,
                                    usage=_usage(job))
        else:
            if first not in groups:
                text = ("(on the host only) " if job.image == HOST and _in_image() else "") + GROUPS[first]
                group = words.add_parser(first, help=text, description=text, allow_abbrev=False)
                _add_globals(group, top=False)
                groups[first] = group.add_subparsers(dest="_sub", metavar="COMMAND",
                                                     required=True, parser_class=_Parser)
            leaf = groups[first].add_parser(job.words[1], help=_summary(job), description=job.help,
                                            formatter_class=_Help, allow_abbrev=False,
                                            usage=_usage(job))
        for f in job.fields:
            _add_field(leaf, f)
        _add_globals(leaf, top=False)
        leaf.set_defaults(_job=job.name)
    return root


def _usage(job):
    return " ".join(["%(prog)s"] + [f.name.upper() + ("..." if f.many else "")
                                    for f in job.fields if f.positional]
                    + ["[options]"])


def _summary(job):
    summary = job.help.splitlines()[0].rstrip(".")
    return "(on the host only) " + summary if job.image == HOST and _in_image() else summary


def _in_image():
    """Inside pose-train's images (they set the runtime): the host's commands do not run here."""
    return bool(os.environ.get(environment.RUNTIME))


def parse(argv):
    """(job, the values given, local, dry_run) from a command line."""
    ns = build_parser().parse_args(argv)
    job = JOBS[ns._job]
    for f in job.fields:
        if f.positional and f.default is None and not getattr(ns, f.name, None):
            raise UserError("%s needs %s (see %s --help)" % (job.command, f.name.upper(),
                                                              job.command))
    given = {f.name: getattr(ns, f.name) for f in job.fields if hasattr(ns, f.name)}
    local = ns.local or os.environ.get(environment.LOCAL) == "1"  # set inside our images
    if ns.stop_wait is not None:   # read by the launcher, and by any job a follow-up starts
        os.environ[environment.STOP_WAIT] = str(ns.stop_wait)
    return job, given, local, ns.dry_run


@contextlib.contextmanager
def _typed_local(job, local):
    """A run the user started with --local is continued with --local (its "continue with:"
    line), not through the launcher; inside our images and under compose the line is theirs."""
    typed = local and os.environ.get(environment.LOCAL) != "1" and environment.CONTINUE_PREFIX not in os.environ
    if typed:   # started as `python -m pose_train` (no pose-train script): said the same way
        start = ([shlex.quote(sys.executable), "-m", "pose_train"]
                 if sys.argv[0].endswith(os.path.join("pose_train", "__main__.py")) else ["pose-train"])
        os.environ[environment.CONTINUE_PREFIX] = " ".join(start + ["--local"] + list(job.words))
    try:
        yield
    finally:
        if typed:
            os.environ.pop(environment.CONTINUE_PREFIX, None)


def run_job(job, given, local=False, dry_run=False):
    """Run one job here or in its image, then its follow-up (convert --verify); exit code."""
    args = finish(job, given)
    job = for_runtime(job, args, local)
    if job.image == HOST and _in_image():
        raise UserError("pose-train %s runs on the host, where Docker and the GPU driver are, not "
                        "inside the %s image; run it there" % (" ".join(job.words),
                                                               os.environ[environment.RUNTIME]))
    if local or job.image == HOST:
        if hasattr(args, "rdzv"):
            from pose_train.training import nodes
            nodes.quiet_connection_errors(args)
        with _typed_local(job, local):
            code = resolve_entry(job)(args) or 0
    else:
        from pose_train.launcher.run import launch
        before = job.first(args) if job.first else None
        if before is not None:
            code = run_job(JOBS[before[0]], before[1], local, dry_run)
            if code:
                return code
        code = launch(job, vars(args), dry_run=dry_run)
        if code == 0 and job.then:
            code = _follow_up(job, args, local, dry_run)
    return code


def _follow_up(job, args, local, dry_run):
    """The job's check in another image (convert --verify): one that cannot start (its image
    missing) is not a success either; exit 3, as --verify without a legacy runtime."""
    follow = job.then(args)
    if follow is None:
        return 0
    try:
        return run_job(JOBS[follow[0]], follow[1], local, dry_run)
    except UserError as err:
        raise UserError("NOT VERIFIED: %s (what `pose-train %s` wrote is kept)" % (err, " ".join(job.words)),
                        code=3)


def main(argv=None):
    """Entry point: the one error boundary. InputError (UserError is one) -> one line on
    stderr and its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with _sigterm_as_interrupt():
            if not argv:
                build_parser().print_help()
                sys.exit(2)
            code = run_job(*parse(argv))
    except InputError as err:   # UserError, and the 2.7 core's errors: one line each
        print("pose-train: error: %s" % err, file=sys.stderr)
        sys.exit(err.code)
    except KeyboardInterrupt as err:
        code = interrupt_exit_code(err)
        print("pose-train: interrupted%s" % ("" if code == 130 else " (%s)" % signal.Signals(
            code - 128).name), file=sys.stderr)
        sys.exit(interrupt_exit_code(err))
    if code:
        sys.exit(code)


def _sigterm_as_interrupt():
    """A SIGTERM or SIGHUP before a job installs its own handling (while torch loads, say) ends
    the run as Ctrl-C does, with a line and exit 143 or 129, not silently; jobs that save or
    record a stop replace this while they run, and it is restored after."""
    def stop(signum, frame):
        raise Interrupted(signum)
    return handled((signal.SIGTERM, signal.SIGHUP), stop)


if __name__ == "__main__":
    main()
