"""Every job's declaration against what is derived from it: CLI, --help, container command,
mounts, the "continue with:" line. A new field needs no new test: these walk them all."""
import os
import shlex
import subprocess
import sys

import pytest

from pose_train import cli
from pose_train.errors import UserError
from pose_train.jobs import HOST, IN, JOBS, OUT, OUT_FILE, continue_line, finish, namespace, to_argv
from pose_train.launcher import run
from pose_train.launcher.paths import plan_mounts

FIELDS = [(job, f) for job in JOBS.values() for f in job.fields]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _id(pair):
    return "%s.%s" % (pair[0].name, pair[1].name)


def sample(f, tmp_path):
    """A valid value for ``f`` that differs from its default, as the user would type it."""
    if f.role in (IN, OUT, OUT_FILE):
        path = tmp_path / ("in_" + f.name)
        path.mkdir(exist_ok=True)
        return str(path) if f.role != OUT_FILE else str(tmp_path / (f.name + ".pth"))
    if f.choices:
        return [c for c in f.choices if c != f.default][-1].upper() if len(f.choices) > 1 \
            else f.choices[0].upper()
    if f.type == "int":
        value = max(int(f.low or 0), 1) * (f.multiple or 1) * 2
        return str(value if value != f.default else value * 2)
    if f.type == "float":
        return "0.375"
    if f.type == "seq":
        return "07"
    return "Some_Name"


def expected(f, text):
    return {"int": int, "float": float, "seq": int}.get(f.type, str)(text.lower() if f.choices
                                                                  else text)


def words(job, tmp_path):
    """The command words, plus a value for a required positional (convert SRC)."""
    return list(job.words) + [sample(f, tmp_path) for f in job.fields
                              if f.positional and f.default is None]


def help_text(job, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(list(job.words) + ["--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("job", list(JOBS.values()), ids=lambda j: j.name)
def test_help_lists_every_spelling(job, capsys):
    text = help_text(job, capsys)
    assert job.help.splitlines()[0] in text
    for f in job.fields:
        # A positional's --flag form is for the container's command line, not shown.
        for spelling in [f.name.upper()] if f.positional else f.spellings():
            assert spelling in text, (job.name, spelling)


@pytest.mark.parametrize("pair", FIELDS, ids=_id)
def test_each_spelling_reaches_the_field(pair, tmp_path):
    job, f = pair
    spellings = f.spellings()
    for spelling in spellings:
        if f.type == "bool":
            argv = [spelling]
            want = True
        else:
            text = sample(f, tmp_path)
            argv, want = [spelling, text], expected(f, text)
        got = cli.parse(words(job, tmp_path) + argv)[1][f.name] if not f.positional \
            else cli.parse(list(job.words) + argv)[1][f.name]
        assert got == ([want] if f.many else want), (spelling, got)
    if f.type == "bool":
        assert cli.parse(words(job, tmp_path) + ["--no-" + f.name])[1][f.name] is False
    if f.positional:
        text = sample(f, tmp_path)
        want = expected(f, text)
        assert cli.parse(list(job.words) + [text])[1][f.name] == ([want] if f.many else want)
        if f.many:   # WEIGHTS...: several bare words, then the flag form, in that order
            got = cli.parse(list(job.words) + [text, text + "2", spellings[0], text + "3"])[1][f.name]
            assert got == [want, expected(f, text + "2"), expected(f, text + "3")]


@pytest.mark.parametrize("pair", [p for p in FIELDS if p[1].type in ("int", "float", "seq")], ids=_id)
def test_numbers_are_checked_with_one_line_naming_the_flag(pair, tmp_path):
    job, f = pair
    bad = ["abc"] + (["1.5"] if f.type != "float" else [])
    for text in bad:
        with pytest.raises(UserError, match="^%s takes " % f.flag):
            cli.parse(words(job, tmp_path) + [f.flag, text])


@pytest.mark.parametrize("pair", [p for p in FIELDS if p[1].choices], ids=_id)
def test_choices_are_checked_and_listed(pair, tmp_path):
    job, f = pair
    with pytest.raises(UserError, match="must be one of %s" % "|".join(f.choices)):
        cli.parse(words(job, tmp_path) + [f.flag, "no-such-value"])


@pytest.mark.parametrize("job", [j for j in JOBS.values() if j.image != HOST], ids=lambda j: j.name)
def test_container_command_and_mounts_follow_the_declaration(job, tmp_path):
    given = {}
    for f in job.fields:
        if f.type != "bool":
            text = sample(f, tmp_path)
            given[f.name] = [expected(f, text)] if f.many else expected(f, text)
        else:
            given[f.name] = True
    args = finish(job, given)
    # What the container receives parses back into the same namespace.
    container_words = [w for w in run.container_argv(job, vars(args))][len(job.container_words):]
    assert finish(job, cli.parse(list(job.words) + container_words)[1]) == args
    new_args, mounts = plan_mounts(job, vars(args), create=False)
    modes = {m.source: m.read_only for m in mounts}
    for f in job.fields:
        value = getattr(args, f.name)
        value = value[0] if f.many else value
        if f.role == IN and value not in (None, "auto"):
            assert modes[str(value)] is True, f.name
        elif f.role == OUT:
            assert modes[str(value)] is False and new_args[f.name] == "/host" + value
        elif f.role == OUT_FILE:
            assert modes[str(tmp_path)] is False and new_args[f.name] == "/host" + value


@pytest.mark.parametrize("name", ["train-dope", "train-keypoints"])
def test_continue_line_replays_the_run_with_resume_auto(name, tmp_path):
    job = JOBS[name]
    given = cli.parse(["train", name.split("-")[1], "--outf", str(tmp_path), "--epochs", "7",
                       "--seed", "3", "--compile", "--resume", "auto"])[1]
    args = finish(job, given)
    line = continue_line(job, args)
    assert line.startswith("pose-train train ") and line.endswith("--resume auto")
    again = finish(job, cli.parse(shlex.split(line)[1:])[1])
    assert again == args


@pytest.mark.parametrize("name", ["train-dope", "train-keypoints"])
def test_under_compose_the_continue_line_is_the_services_own_command(name):
    """A compose user was told to run `pose-train train dope --outf /out ...`, a host command
    with a container path. Read from compose.yaml itself: its entrypoint + the line = the run."""
    import yaml
    service = yaml.safe_load(open(os.path.join(ROOT, "compose.yaml")))["services"][name]
    fixed = service["entrypoint"][2:]                        # after pose-train-entrypoint pose-train
    job = JOBS[name]
    user = ["--epochs", "7", "--seed", "3", "--resume", "auto"] + (
        ["--seq", "1"] if name == "train-keypoints" else [])
    args = finish(job, cli.parse(fixed + user)[1])
    line = continue_line(job, args, service["environment"])
    prefix = "docker compose run --rm " + name
    assert line.startswith(prefix + " ") and line.endswith("--resume auto") and "/out" not in line
    assert finish(job, cli.parse(fixed + shlex.split(line)[len(prefix.split()):])[1]) == args
    assert service["stop_grace_period"] == "10m"                # the launcher's --stop-wait 600 s


def test_namespace_takes_aliases_and_checks_like_the_cli(tmp_path):
    ns = namespace("train-keypoints", trainBatch=4, inputResH="64", data=str(tmp_path))
    assert (ns.train_batch, ns.input_res_h, ns.opt_method) == (4, 64, "rmsprop")
    with pytest.raises(UserError, match="--epochs takes a whole number"):
        namespace("train-dope", epochs=1.5)
    with pytest.raises(UserError, match="has no flag --epoch"):
        namespace("train-dope", epoch=1)
    assert namespace("convert", src="/w/a.pth").out == "/w/a_melodic.pth"


def test_container_argv_drops_what_is_off():
    assert to_argv({"data": ["/a"], "save": True, "strict": False, "net": None}) == \
        ["--data=/a", "--save"]


def test_help_does_not_import_torch():
    code = ("import sys\nfrom pose_train import cli\ntry:\n    cli.main(['train', 'dope', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--batchsize" in result.stdout


def test_a_repeated_single_flag_keeps_the_last_and_says_so(capsys):
    """compose's entrypoints pass --outf=/out first; the user's --outf comes after it."""
    given = cli.parse(["train", "keypoints", "--outf=/out", "--outf", "/out/run2", "--data", "a",
                       "--data", "b"])[1]
    assert given["outf"] == "/out/run2" and given["data"] == "b"
    err = capsys.readouterr().err
    assert "--outf given twice; using the last, /out/run2" in err and "--data given twice" in err


def test_the_images_own_help_marks_the_host_commands_and_refuses_them(monkeypatch, capsys):
    """Inside an image (POSE_TRAIN_RUNTIME set there) `images` and `doctor` were listed as if
    they ran there."""
    from pose_train import cli
    monkeypatch.setenv("POSE_TRAIN_RUNTIME", "modern")
    text = cli.build_parser().format_help()
    assert "(on the host only) build and list the runtime images" in text
    assert [l for l in text.splitlines() if l.strip().startswith("doctor")][0].count("on the host only") == 1
    assert "(on the host only)" not in [l for l in text.splitlines() if l.strip().startswith("convert")][0]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["doctor"])
    assert stopped.value.code == 2
    assert "pose-train doctor runs on the host" in capsys.readouterr().err
    monkeypatch.delenv("POSE_TRAIN_RUNTIME")
    assert "on the host only" not in cli.build_parser().format_help()
