"""What a job is, declared once: its fields, the image that runs it, the function that runs it.

Everything else is derived from a declaration: the CLI command and its ``--help``
(pose_train.cli), type coercion and validation (``coerce``), the argument namespace a job
function receives (``namespace``), the container command line (``to_argv``), the bind mounts
(pose_train.launcher.paths), and the "continue with:" line a stopped run prints
(``continue_line``). Nothing here imports torch: the host launcher reads it.
"""
import importlib
import math
import os
import sys
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any, Callable, Optional, Tuple

from pose_train import environment
from pose_train.errors import UserError
from pose_train.training.signals import continue_command

MODERN, LEGACY, HOST = "modern", "legacy", "host"   # HOST: runs in the launcher's own process
IN, OUT, OUT_FILE = "in", "out", "out_file"         # mount roles of path fields


@dataclass(frozen=True)
class Field:
    name: str                   # snake_case: the attribute and the canonical --flag
    type: str = "str"           # str | path | int | float | bool | seq (LINEMOD object id)
    default: Any = None
    help: str = ""
    choices: Tuple[str, ...] = ()   # lower-case; the user's spelling is lower-cased first
    aliases: Tuple[str, ...] = ()   # other accepted spellings, e.g. the seed's nClasses
    role: str = ""              # IN (read-only mount), OUT (folder, read-write), OUT_FILE
    many: bool = False          # repeatable: --data A --data B
    positional: bool = False    # also taken as the first bare word (convert SRC)
    low: Optional[float] = None     # smallest allowed value
    high: Optional[float] = None    # largest allowed value (sizes that would exhaust memory)
    positive: bool = False      # > 0
    multiple: Optional[int] = None  # value % multiple == 0
    resumes: bool = True        # False: left out of the "continue with:" line (--net, --resume)
    words: Tuple[str, ...] = ()     # IN values that are not paths: "auto", "random:" (prefixes)
    beside: bool = False        # IN file whose folder is mounted too: its json sidecar is read

    @property
    def flag(self):
        return "--" + self.name

    def spellings(self):
        """Every accepted --flag: the name, its dashed form, the aliases (fire took dashes too)."""
        names = [self.name, self.name.replace("_", "-")] + list(self.aliases)
        return ["--" + n for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class Job:
    name: str                   # "train-dope"; the compose service name too, where one exists
    image: str                  # MODERN, LEGACY or HOST
    entry: str                  # "module:function" taking one namespace, returning an exit code
    help: str
    fields: Tuple[Field, ...] = ()
    uses_gpu: bool = True
    words: Tuple[str, ...] = ()     # command words; default: the name split at "-"
    container_words: Tuple[str, ...] = ()   # what the image's entrypoint takes; default: words
    # Host-side hooks, plain functions of pose_train.jobs (only ``entry`` is imported late):
    defaults: Optional[Callable] = None   # f(dict of values) -> dict: defaults that depend on others
    then: Optional[Callable] = None       # f(args) -> (job name, values) or None: run after, host only
    first: Optional[Callable] = None      # the same, run before the job (which it may adjust)

    def __post_init__(self):
        if not self.words:
            object.__setattr__(self, "words", tuple(self.name.split("-")))
        if not self.container_words:
            object.__setattr__(self, "container_words", self.words)

    def _by_name(self):
        table = {}
        for f in self.fields:
            for spelling in [f.name] + list(f.aliases):
                table[spelling] = f
        return table

    def _role(self, role):
        return tuple(f.name for f in self.fields if f.role == role)

    inputs = property(lambda self: self._role(IN))

    def field(self, name):
        return next(f for f in self.fields if f.name == name)

    def is_word(self, name, value):
        """Whether an IN field's value is one of its keywords (--resume auto), not a path."""
        return any(str(value).startswith(w) for w in self.field(name).words)
    outputs = property(lambda self: self._role(OUT))
    out_files = property(lambda self: self._role(OUT_FILE))

    @property
    def logs_to(self):
        """The output folder that gets logs/<run-id>.log (the first OUT field)."""
        return self.outputs[0] if self.outputs else ""

    @property
    def command(self):
        return " ".join(("pose-train",) + self.words)


def for_runtime(job, args, local=False):
    """The job as it will run: ``--runtime melodic`` moves a job whose entry is code of
    pose_train_py27 to the legacy image, which runs it under Python 2.7 (others, like eval,
    use a ``first`` step for their legacy part)."""
    if job.image == LEGACY and local and sys.version_info[0] >= 3:
        # Run here it would load the file in this Python 3 torch and report OK: no proof
        # that torch 1.4 loads it.
        raise UserError("pose-train %s runs in Python 2.7 + torch 1.4; drop --local (the legacy "
                        "image), or run `python2.7 -m pose_train_py27 %s ...` where they are "
                        "installed" % (" ".join(job.words), " ".join(job.words)), code=3)
    if getattr(args, "runtime", None) != "melodic" or job.image != MODERN \
            or not job.entry.startswith("pose_train_py27."):
        return job
    if local:
        raise UserError("--runtime melodic runs in the legacy image; drop --local, or run "
                        "`python2.7 -m pose_train_py27 %s ...` where Python 2.7 + torch 1.4 "
                        "are installed" % " ".join(job.words))
    return replace(job, image=LEGACY)


def resolve(ref):
    """Import "module:function" only when it runs: the host launcher never imports torch."""
    module_name, func_name = ref.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def resolve_entry(job):
    return resolve(job.entry)


# ---------------------------------------------------------------------------------------------
# Coercion: one function per type, one error style, used by the CLI and by namespace() alike.

def _whole(f, text):
    if isinstance(text, bool):
        raise ValueError
    if isinstance(text, int):
        return text
    text = str(text).strip()
    if not text.lstrip("+-").isdigit():
        raise ValueError
    return int(text)


def _seq(f, text):
    """A LINEMOD object id: 1, "1" and "01" are all object 1 (fire used to turn 01 into 1)."""
    value = _whole(f, text)
    if value < 1:
        raise ValueError
    return value


def _bool(f, text):
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _float(f, text):
    if isinstance(text, bool):
        raise ValueError
    return float(text)


_PARSE = {"str": lambda f, t: str(t), "path": lambda f, t: str(t), "int": _whole,
          "float": _float, "bool": _bool, "seq": _seq}
_WANTS = {"int": "a whole number", "float": "a number", "bool": "true or false",
          "seq": "a LINEMOD object number such as 1 or 01", "str": "text", "path": "a path"}


def coerce(f, value, spelling=None):
    """The typed, checked value of ``f`` from what the user gave; UserError naming the flag."""
    flag = spelling or f.flag
    if value is None:
        return None
    try:
        typed = _PARSE[f.type](f, value)
    except (TypeError, ValueError):
        raise UserError("%s takes %s, got %r" % (flag, _WANTS[f.type], value))
    if f.choices:
        typed = typed.lower()
        if typed not in f.choices:
            raise UserError("%s must be one of %s, got %r" % (flag, "|".join(f.choices), value))
    if f.type in ("int", "float"):
        _check_range(f, flag, typed)
    return typed


def _check_range(f, flag, value):
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError("%s must be a finite number, got %s" % (flag, value))
    if f.positive and not value > 0:
        raise UserError("%s must be positive, got %s" % (flag, value))
    if f.low is not None and value < f.low:
        raise UserError("%s must be at least %s, got %s" % (flag, _num(f.low), value))
    if f.high is not None and value > f.high:
        raise UserError("%s must be at most %s, got %s" % (flag, _num(f.high), value))
    if f.multiple and value % f.multiple:
        raise UserError("%s takes multiples of %d, got %s" % (flag, f.multiple, value))


def _num(x):
    return int(x) if float(x).is_integer() else x


def finish(job, values):
    """Defaults for what was not given, every value checked: the namespace a job receives."""
    out = {}
    for f in job.fields:
        raw = values.get(f.name, f.default)
        if f.many:
            raw = [] if raw is None else list(raw) if isinstance(raw, (list, tuple)) else [raw]
            out[f.name] = [coerce(f, v) for v in raw]
        else:
            out[f.name] = coerce(f, raw)
    if job.defaults:
        out = job.defaults(dict(out))
    return SimpleNamespace(**out)


def namespace(job, **given):
    """A job's namespace from keyword arguments (any spelling), checked as the CLI checks it.

    What tests and benchmarks call instead of building a SimpleNamespace by hand.
    """
    table, values = job._by_name(), {}
    for key, value in given.items():
        if key not in table:
            raise UserError("%s has no flag --%s" % (job.command, key))
        values[table[key].name] = coerce(table[key], value, "--" + key) \
            if not table[key].many else value
    return finish(job, values)


# ---------------------------------------------------------------------------------------------
# Command lines built from a namespace.

def to_argv(values):
    """``{"data": ["/a"], "save": True, "net": None}`` -> ["--data=/a", "--save"], in order.

    False, None and [] are left out: every flag's default is what its absence means.
    """
    flags = []
    for key, value in values.items():
        if value is None or value is False or value == []:
            continue
        if value is True:
            flags.append("--%s" % key)
        elif isinstance(value, (list, tuple)):
            flags += ["--%s=%s" % (key, v) for v in value]
        else:
            flags.append("--%s=%s" % (key, value))
    return flags


def input_paths(job, args):
    """(field name, path) of every input path given, keywords (--resume auto) left out."""
    values = vars(args) if not isinstance(args, dict) else args
    for name in job.inputs:
        value = values.get(name)
        for path in (value if isinstance(value, (list, tuple)) else [value]):
            if path is not None and not job.is_word(name, path):
                yield name, path


def check_inputs(job, args):
    """One line naming the first input path that is not there (before a container is made, or
    before the nodes of a several-machine run wait for each other)."""
    for name, path in input_paths(job, args):
        if not os.path.exists(path):
            raise UserError("--%s %s: no such file or folder; check the path (relative paths are "
                            "taken from %s)" % (name, path, os.getcwd()))


def command_words(job, args):
    """This run as the words after ``pose-train``: the job's words, then its flags."""
    return list(job.words) + to_argv(vars(args) if not isinstance(args, dict) else args)


# Set by compose.yaml's training services: the command that reruns the service, and the flags
# its entrypoint already gives (a compose user cannot run pose-train's own CLI in there).
CONTINUE_PREFIX_ENV, CONTINUE_SKIP_ENV = environment.CONTINUE_PREFIX, environment.CONTINUE_SKIP


def continue_line(job, args, environ=None):
    """The shell command that continues this run: its non-default flags, then --resume auto."""
    environ = os.environ if environ is None else environ
    values = vars(args) if not isinstance(args, dict) else args
    prefix = environ.get(CONTINUE_PREFIX_ENV, "").split()
    words = prefix or ["pose-train"] + list(job.words)
    given = set(environ.get(CONTINUE_SKIP_ENV, "").split()) if prefix else set()
    for f in job.fields:
        value = values.get(f.name)
        if not f.resumes or value == f.default or (f.many and not value):
            continue
        if "--%s=%s" % (f.name, value) in given or (
                f.many and {"--%s=%s" % (f.name, v) for v in value} <= given):
            continue
        if isinstance(value, bool):
            words.append(("--" if value else "--no-") + f.name)
        elif isinstance(value, (list, tuple)):
            for v in value:
                words += ["--" + f.name, str(v)]
        elif value is not None:
            words += ["--" + f.name, str(value)]
    return continue_command(words)


def help_default(f):
    if f.type == "bool" or f.default in (None, [], ()):
        return ""
    return " (default: %s)" % (f.default,)

