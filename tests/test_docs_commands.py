"""Every `pose-train` command the README and docs/ show is one the CLI accepts: a flag renamed
or dropped fails here, not in a reader's terminal. (The workflows themselves run in
test_journeys.py and test_docker_journeys.py.)"""
import glob
import os
import re
import shlex

import pytest

from pose_train import cli
from pose_train.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def shown_commands():
    """(page, line number, argv after `pose-train`) of each command in a fenced code block;
    continued lines joined, comments dropped, `a && b` split. Elided ones (`...`) are left out."""
    found = []
    for page in PAGES:
        block, start, pending = False, 0, ""
        for number, line in enumerate(open(page, encoding="utf-8"), 1):
            if line.lstrip().startswith("```"):
                block, pending = not block, ""
                continue
            if not block:
                continue
            start = start if pending else number
            pending += line.rstrip("\n")
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            text, pending = pending, ""
            for command in re.split(r"\s&&\s", text):
                if not command.strip().startswith("pose-train "):
                    continue
                words = shlex.split(command, comments=True)
                if words[:1] == ["pose-train"] and "..." not in words:
                    found.append((os.path.relpath(page, ROOT), start, words[1:]))
    return found


COMMANDS = shown_commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("page, line, argv", COMMANDS,
                         ids=["%s:%d" % (page, line) for page, line, _ in COMMANDS])
def test_each_shown_command_is_accepted_by_the_parser(page, line, argv):
    try:
        cli.parse(argv)
    except (UserError, SystemExit) as err:
        pytest.fail("%s:%d: pose-train %s: %s" % (page, line, " ".join(argv), err))


def test_every_relative_link_in_the_pages_resolves():
    """The README points into docs/ and docs/ back and into the code: a moved page breaks none."""
    broken = []
    for page in PAGES:
        text = open(page, encoding="utf-8").read()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://")) and not os.path.exists(
                    os.path.normpath(os.path.join(os.path.dirname(page), target))):
                broken.append("%s -> %s" % (os.path.relpath(page, ROOT), target))
    assert broken == []
