"""README.md runs: every shell, `registry`, grpcurl and Python example in it, in order,
against a fresh server on a fresh SQLite database, as a reader would type them.

The examples run in one bash session in a directory of their own (with a `.venv` link to
the project's), so variables and files carry from one block to the next; Python blocks
run there with `.venv/bin/python`. 127.0.0.1:50051 and localhost:50051 become the test
server's address. A comment right before a block changes how it runs:

- `<!-- doc-test: skip (why) -->`: the block is not run (the whole suite, a server that
  runs until stopped, PostgreSQL only);
- `<!-- doc-test: exit N "start of a command" (why) -->`: that command of the block must
  exit with N instead of 0.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..support.processes import BIN, Proc, free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
EXAMPLE_LANGUAGES = {"sh", "bash", "console", "python"}
NOT_EXAMPLES = {"", "text"}  # output shown, a directory tree
MARKER = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->")
EXIT_MARKER = re.compile(r'exit (\d+) "([^"]+)" \(.+\)')
DEFAULT_ADDRESSES = ("127.0.0.1:50051", "localhost:50051")
COMMAND_TIMEOUT = 60.0


@dataclass
class Command:
    line: int  # of README.md, 1-based
    text: str
    expected_exit: int = 0


@dataclass
class Example:
    line: int  # the opening fence
    language: str
    commands: list[Command] = field(default_factory=list)
    skip: str = ""  # the reason


def _complete(text: str) -> bool:
    """Whether `text` is a whole shell command (no trailing backslash, no open quote)."""
    if text.rstrip().endswith("\\"):
        return False
    checked = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return checked.returncode == 0


def _shell_commands(lines: list[tuple[int, str]], prompted: bool) -> list[Command]:
    """The commands of a block: in a console block those after `$ ` (other lines are
    their output), in a shell block every line that is not a comment."""
    commands: list[Command] = []
    current: Command | None = None
    for number, line in lines:
        if current is not None:
            current.text += "\n" + line
        elif prompted and line.startswith("$ "):
            current = Command(number, line[2:])
        elif not prompted and line.strip() and not line.lstrip().startswith("#"):
            current = Command(number, line)
        if current is not None and _complete(current.text):
            commands.append(current)
            current = None
    assert current is None, f"README.md:{current.line}: unfinished command"
    return commands


def examples(text: str) -> Iterator[Example]:
    """The fenced examples of README.md in order, with what their markers say."""
    markers: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if found := MARKER.fullmatch(line.strip()):
            markers.append(found.group(1))
        elif line.startswith("```"):
            language = line[3:].strip()
            start = index + 1
            index += 1
            body: list[tuple[int, str]] = []
            while not lines[index].startswith("```"):
                body.append((index + 1, lines[index]))
                index += 1
            assert language in EXAMPLE_LANGUAGES | NOT_EXAMPLES, (
                f"README.md:{start}: a ```{language} block: name it one of "
                f"{sorted(EXAMPLE_LANGUAGES)} (an example) or text (not one)"
            )
            if language in EXAMPLE_LANGUAGES:
                yield _example(start, language, body, markers)
            elif markers:
                raise AssertionError(f"README.md:{start}: doc-test marker before a non-example")
            markers = []
        elif line.strip():
            assert not markers, f"README.md:{index + 1}: doc-test marker not right before a block"
        index += 1


def _example(start: int, language: str, body: list[tuple[int, str]], markers: list[str]) -> Example:
    example = Example(start, language)
    exits: dict[str, int] = {}
    for marker in markers:
        if marker.startswith("skip (") and marker.endswith(")"):
            example.skip = marker[len("skip (") : -1]
        elif found := EXIT_MARKER.fullmatch(marker):
            exits[found.group(2)] = int(found.group(1))
        else:
            raise AssertionError(f"README.md:{start}: unknown doc-test marker {marker!r}")
    if language == "python":
        code = "\n".join(text for _, text in body)
        end = f"README_{uuid.uuid4().hex}"
        example.commands = [Command(start + 1, f".venv/bin/python - <<'{end}'\n{code}\n{end}")]
    else:
        example.commands = _shell_commands(body, prompted=language == "console")
    for prefix, code in exits.items():
        matching = [c for c in example.commands if c.text.startswith(prefix)]
        assert matching, f"README.md:{start}: no command starts with {prefix!r}"
        for command in matching:
            command.expected_exit = code
    return example


class Shell:
    """One bash session: runs a command, answers its exit status and output."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # closed with whatever it started
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.mark = f"__README_{uuid.uuid4().hex}__"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command: str) -> tuple[int, str]:
        assert self.proc.stdin is not None
        # stdin is the script: a command must not read it
        self.proc.stdin.write(f"{{\n{command}\n}} </dev/null\nprintf '\\n{self.mark} %d\\n' $?\n")
        self.proc.stdin.flush()
        output: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=COMMAND_TIMEOUT)
            except queue.Empty:
                return -1, "".join(output) + f"\n(no end after {COMMAND_TIMEOUT:.0f} s)"
            if line is None:
                return -1, "".join(output) + "\n(the shell ended)"
            if line.startswith(self.mark):  # after the newline printf added
                return int(line.split()[1]), "".join(output).removesuffix("\n")
            output.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def test_every_readme_example_runs_in_order(tmp_path: Path) -> None:
    if os.environ.get("REGISTRY_TEST_DATABASE") == "postgres":
        pytest.skip("the README's quick start runs on SQLite")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(BIN.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(PATH=f"{work / '.venv' / 'bin'}:{env['PATH']}", HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "config"))  # fmt: skip
    port = free_port()
    address = f"127.0.0.1:{port}"
    # what `make run` does, in the examples' directory: its registry.db is the default
    server = Proc(
        [], port, env={**env, "REGISTRY_DATABASE_URL": f"sqlite:///{work / 'registry.db'}"}
    )
    shell = Shell(work, env)
    try:
        server.wait_healthy()
        run_examples(README.read_text(), shell, address)
    finally:
        shell.close()
        server.stop()


def run_examples(text: str, shell: Shell, address: str) -> None:
    """Runs the examples of `text` in `shell`; fails at the first one that fails."""
    for example in examples(text):
        if example.skip:
            continue
        for command in example.commands:
            typed = command.text
            for default in DEFAULT_ADDRESSES:
                typed = typed.replace(default, address)
            status, output = shell.run(typed)
            assert status == command.expected_exit, (
                f"README.md:{command.line}: exit {status} (expected "
                f"{command.expected_exit}) from\n{command.text}\n--- output ---\n{output}"
            )


def test_a_failing_example_names_its_line(tmp_path: Path) -> None:
    """The runner itself: variables carry across blocks, markers apply, skipped blocks do
    not run, and a failure names the README line of the command."""
    text = "\n".join([
        "Intro.", "", "```sh", "GREETING=hello", "```",
        '<!-- doc-test: exit 3 "exit 3" (a command that fails on purpose) -->',
        "```console", "$ test \"$GREETING\" = hello", "$ (exit 3)", "```",
        "<!-- doc-test: skip (never runs) -->", "```sh", "false", "```",
        "```python", "print('localhost:50051')", "```",
        "```console", "$ echo one \\", "    two", "$ test \"$GREETING\" = bye", "```",
    ])  # fmt: skip
    (tmp_path / ".venv").symlink_to(BIN.parent)
    shell = Shell(tmp_path, dict(os.environ))
    try:
        with pytest.raises(AssertionError, match=r"README.md:21: exit 1 \(expected 0\)"):
            run_examples(text.replace('"exit 3"', '"(exit 3)"'), shell, "127.0.0.1:1")
        assert shell.run("echo $GREETING") == (0, "hello\n")
    finally:
        shell.close()


def test_skips_are_few_and_say_why() -> None:
    every = list(examples(README.read_text()))
    skipped = [e for e in every if e.skip]
    assert every and len(skipped) * 2 < len(every), [e.line for e in skipped]
    assert all(len(e.skip) >= 10 for e in skipped)
