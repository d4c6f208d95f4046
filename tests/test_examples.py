"""The recipes in examples/ against the real command-line parsers, so that a renamed or removed flag fails here.

The recipes cannot be run in the test suite (they download 14B models and need GPUs), and nothing else would
notice if a flag they pass stopped existing: the first user would find out minutes into a multi-GPU launch. So
every ``examples/**/*.sh`` is read statically, each ``--flag`` it passes is attributed to the program that
receives it (a training script, a ``fastvideo-hf`` subcommand, ``accelerate launch``, ``torchrun``, or another
recipe that it ``bash``-es into), and looked up in that program's own argparse parser, built by the same code the
program runs: no list of flags is copied here. Literal values are also checked against the flag's ``type`` and
``choices``. The accelerate configs are loaded the way ``accelerate launch`` loads them.

Reading, not running, the scripts means every branch is covered (``NUM_GPUS > 1`` or not, ``HUB_MODEL_ID`` set
or not) without stubbing the programs.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from .helpers import REPO

EXAMPLES = REPO / "examples"
SCRIPTS = sorted(EXAMPLES.rglob("*.sh"))
ACCELERATE_CONFIGS = sorted((EXAMPLES / "accelerate_configs").glob("*.yaml"))
TRAINING_SCRIPTS = {"train_wan_lora.py": True, "train_wan.py": False}  # script -> lora
# Commands a recipe may run whose flags are not checked: the Hub CLI (typer, no argparse parser to ask), and the
# inline `python -` that checks the validation images (its arguments are positional).
UNCHECKED_COMMANDS = {"hf", "python"}


# ---------------------------------------------------------------------------------------------- the real parsers


@functools.cache
def training_parser(lora: bool) -> argparse.ArgumentParser:
    from fastvideo_hf.training.args import build_training_parser

    return build_training_parser("examples test", lora=lora)


@functools.cache
def preprocess_parser() -> argparse.ArgumentParser:
    """What both `fastvideo-hf preprocess` (cli.main hands it over) and `python -m fastvideo_hf.preprocess` parse."""
    from fastvideo_hf.preprocess.cli import build_parser

    return build_parser()


@functools.cache
def fastvideo_hf_subcommands() -> dict[str, argparse.ArgumentParser]:
    from fastvideo_hf.tools.cli import build_parser

    (subparsers,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


@functools.cache
def accelerate_launch_parser() -> argparse.ArgumentParser:
    from accelerate.commands.launch import launch_command_parser

    return launch_command_parser()


@functools.cache
def torchrun_parser() -> argparse.ArgumentParser:
    from torch.distributed.run import get_args_parser

    return get_args_parser()


# ------------------------------------------------------------------------------------------ reading the scripts


def _strip_heredocs(text: str) -> str:
    """Drop here-document bodies (the inline Python of the I2V recipes): their text is not shell."""
    out, lines = [], iter(text.splitlines())
    for line in lines:
        out.append(line)
        match = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if match and not line.lstrip().startswith("#"):
            for body in lines:
                if body.strip() == match.group(1):
                    break
    return "\n".join(out) + "\n"


def _statements(text: str) -> list[str]:
    """Split a script into statements: comments removed, continuation lines joined, and a newline inside quotes
    or inside the parentheses of an array assignment kept in its statement."""
    statements, current, quote, depth, index = [], [], None, 0, 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                current.append(text[index : index + 2])
                index += 2
                continue
            if char == quote:
                quote = None
            current.append(char)
        elif char == "\\" and text[index + 1 : index + 2] == "\n":
            current.append(" ")
            index += 2
            continue
        elif char == "#" and (not current or current[-1][-1:] in " \t\n(;"):
            while index < len(text) and text[index] != "\n":
                index += 1
            continue
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == "\n" and depth <= 0:
            statements.append("".join(current).strip())
            current, depth = [], 0
        else:
            depth += {"(": 1, ")": -1}.get(char, 0)
            current.append(char)
        index += 1
    statements.append("".join(current).strip())
    return [statement for statement in statements if statement]


@dataclass
class Invocation:
    """One program a recipe runs, and the words it passes to it."""

    program: str  # "accelerate launch", "train_wan_lora.py", "fastvideo-hf generate", "recipe:<path>", ...
    words: list[str]


@dataclass
class Recipe:
    path: Path
    arrays: dict[str, list[str]] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(REPO))


ARRAY = re.compile(r"^(\w+)(\+?)=\((.*)\)$", re.DOTALL)


def _expand(words: list[str], arrays: dict[str, list[str]]) -> list[str]:
    """``"${name[@]}"`` becomes every word the array ever gets, over all branches of the script."""
    out = []
    for word in words:
        match = re.fullmatch(r"\$\{(\w+)\[@\]\}", word)
        out.extend(arrays.get(match.group(1), []) if match else [word])
    return out


def _words(statement: str) -> list[str]:
    """Shell words with the control operators (; && | ...) as words of their own, quotes removed."""
    lexer = shlex.shlex(statement, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    return list(lexer)


def _commands(words: list[str]) -> list[list[str]]:
    """Simple commands of a statement: split at ; && || | and drop the shell keywords that precede a command."""
    commands, current = [], []
    for word in words:
        if word in {";", "&&", "||", "|", ";;"}:
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    keywords = {"if", "then", "else", "elif", "do", "while", "until", "exec", "!"}
    for command in commands:
        while command and command[0] in keywords:
            command.pop(0)
    return [command for command in commands if command]


def _invocations(command: list[str], recipe: Path) -> list[Invocation]:
    head = command[0]
    if head == "accelerate" and command[1:2] == ["launch"]:
        rest = command[2:]
        (script_at,) = [i for i, word in enumerate(rest) if Path(word).name in TRAINING_SCRIPTS] or [None]
        assert script_at is not None, f"{recipe}: accelerate launch of no training script: {command}"
        return [
            Invocation("accelerate launch", rest[:script_at]),
            Invocation(Path(rest[script_at]).name, rest[script_at + 1 :]),
        ]
    if head == "torchrun":
        module_at = command.index("-m")
        assert command[module_at + 1] == "fastvideo_hf.preprocess", f"{recipe}: torchrun of {command[module_at + 1]}"
        return [Invocation("torchrun", command[1:module_at]), Invocation("preprocess", command[module_at + 2 :])]
    if head == "fastvideo-hf":
        return [Invocation("preprocess" if command[1] == "preprocess" else f"fastvideo-hf {command[1]}", command[2:])]
    if head == "bash" and command[1].endswith(".sh"):
        path = command[1].replace("$HERE/", f"{recipe.parent}/").replace("$REPO/", f"{REPO}/")
        target = (recipe.parent / path).resolve()
        return [Invocation(f"recipe:{target}", command[2:])]
    if head in UNCHECKED_COMMANDS:
        return [Invocation(head, command[1:])]
    return []


@functools.cache
def read_recipe(path: Path) -> Recipe:
    recipe = Recipe(path)
    for statement in _statements(_strip_heredocs(path.read_text())):
        array = ARRAY.match(statement)
        if array:
            name, append, body = array.groups()
            words = shlex.split(body)
            recipe.arrays[name] = recipe.arrays.get(name, []) + words if append else words
            continue
        for command in _commands(_words(statement)):
            recipe.invocations += _invocations(_expand(command, recipe.arrays), path)
    return recipe


def recipe_program(path: Path) -> str:
    """The program a recipe's own extra flags ("$@") end up in: its training script or `fastvideo-hf` subcommand,
    or, for a recipe that only adds flags to another one, that recipe's program."""
    programs = set()
    for invocation in read_recipe(path).invocations:
        if invocation.program.startswith("recipe:"):
            programs.add(recipe_program(Path(invocation.program.removeprefix("recipe:"))))
        elif invocation.program not in UNCHECKED_COMMANDS | {"accelerate launch", "torchrun"}:
            programs.add(invocation.program)
    assert len(programs) == 1, f"{path.relative_to(REPO)}: expected one program, found {sorted(programs) or 'none'}"
    return programs.pop()


def parser_for(program: str) -> argparse.ArgumentParser:
    if program in TRAINING_SCRIPTS:
        return training_parser(TRAINING_SCRIPTS[program])
    if program == "preprocess":
        return preprocess_parser()
    if program == "accelerate launch":
        return accelerate_launch_parser()
    if program == "torchrun":
        return torchrun_parser()
    if program.startswith("fastvideo-hf "):
        subcommand = program.removeprefix("fastvideo-hf ")
        subcommands = fastvideo_hf_subcommands()
        assert subcommand in subcommands, f"`{program}` is not a fastvideo-hf subcommand ({sorted(subcommands)})"
        return subcommands[subcommand]
    raise AssertionError(f"no parser known for {program}")


def _is_literal(word: str) -> bool:
    return "$" not in word


def flag_problems(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """Each ``--flag`` of ``words`` that ``parser`` does not define (exactly: no abbreviations), that takes no
    value but is given one, or whose literal value its ``type`` or ``choices`` refuse."""
    problems = []
    for index, word in enumerate(words):
        if not word.startswith("--"):
            continue
        flag, _, inline = word.partition("=")
        action = parser._option_string_actions.get(flag)
        if action is None:
            problems.append(f"{flag}: no such flag")
            continue
        following = words[index + 1] if index + 1 < len(words) else None
        if action.nargs == 0:
            if inline or (following is not None and not following.startswith("--") and following != "$@"):
                problems.append(f"{flag} takes no value, got {inline or following!r}")
            continue
        value = inline or following
        if value is None or value.startswith("--") or not _is_literal(value):
            continue
        if action.type is not None and callable(action.type):
            try:
                value = action.type(value)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
                problems.append(f"{flag} {value!r}: {error}")
                continue
        if action.choices is not None and value not in action.choices:
            problems.append(f"{flag} {value!r}: not one of {list(action.choices)}")
    return problems


# ------------------------------------------------------------------------------------------------------- tests


def test_every_recipe_is_found():
    """A glob that silently found nothing would pass every test below."""
    names = {script.name for script in SCRIPTS}
    assert {"finetune_lora.sh", "finetune_full.sh", "finetune_lora_24gb.sh"} <= names
    assert {"finetune_full_context_parallel.sh", "preprocess_t2v.sh", "preprocess_i2v.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(EXAMPLES)))
def test_recipe_is_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{script.relative_to(REPO)}: bash -n failed:\n{result.stderr}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(EXAMPLES)))
def test_recipe_flags_exist_in_the_programs_parsers(script):
    recipe = read_recipe(script)
    recipe_program(script)  # exactly one program receives the recipe's flags (and the user's "$@")
    problems = []
    for invocation in recipe.invocations:
        if invocation.program in UNCHECKED_COMMANDS:
            continue
        if invocation.program.startswith("recipe:"):
            target = Path(invocation.program.removeprefix("recipe:"))
            assert target.is_file(), f"{recipe.name} runs {target}, which does not exist"
            program = recipe_program(target)
        else:
            program = invocation.program
        parser = parser_for(program)
        problems += [f"{recipe.name}: {program}: {problem}" for problem in flag_problems(parser, invocation.words)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(EXAMPLES)))
def test_files_a_recipe_names_exist(script):
    """The accelerate config, the validation file and the training script a recipe points at are in the repo."""
    text = script.read_text()
    named = re.findall(r"\$REPO/([\w./-]+)", text) + [
        str((script.parent / name).relative_to(REPO)) for name in re.findall(r"\$HERE/([\w./-]+)", text)
    ]
    missing = [name for name in named if not (REPO / name).exists()]
    assert not missing, f"{script.relative_to(REPO)} names files that do not exist: {missing}"


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda path: path.name)
def test_accelerate_config_keys_are_known_to_accelerate(config):
    """``accelerate launch`` loads the file through ``load_config_from_file`` (unknown top-level keys raise there)
    and copies the keys of its nested sections (``fsdp_config``: prefixed ``fsdp_``) onto its own parsed
    arguments; a nested key that is not a launch argument would be set and then ignored."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    name = config.relative_to(REPO)
    content = yaml.safe_load(config.read_text())
    unknown = sorted(set(content) - set(ClusterConfig.__dataclass_fields__))
    assert not unknown, f"{name}: keys ClusterConfig does not accept: {unknown}"
    loaded = load_config_from_file(str(config))
    assert isinstance(loaded, ClusterConfig), f"{name}: loaded as {type(loaded).__name__}"
    destinations = {action.dest for action in accelerate_launch_parser()._actions}
    prefixes = {"fsdp_config": "fsdp_", "fp8_config": "fp8_", "dynamo_config": "dynamo_"}
    nested_unknown = []
    for section, values in content.items():
        if not isinstance(values, dict):
            continue
        prefix = prefixes.get(section, "")
        for key in values:
            dest = key if key.startswith(prefix) else prefix + key
            if dest not in destinations:
                nested_unknown.append(f"{section}.{key}")
    assert not nested_unknown, f"{name}: keys accelerate launch does not know: {nested_unknown}"


def test_flag_checks_catch_a_bad_recipe(tmp_path):
    """The checks above would pass vacuously if the reader found no flags; a recipe with a typo must fail."""
    bad = tmp_path / "bad.sh"
    bad.write_text(
        'launch=(accelerate launch --num_processes "$NUM_GPUS" --mixed_precision bf17)\n'
        "args=(\n  --learning_rate 1e-5   # a comment with --not_a_flag\n  --lerning_rate 1e-5\n"
        "  --gradient_checkpointing true\n)\n"
        '"${launch[@]}" "$REPO/training_scripts/train_wan.py" "${args[@]}" "$@"\n'
    )
    recipe = read_recipe(bad)
    assert [invocation.program for invocation in recipe.invocations] == ["accelerate launch", "train_wan.py"]
    launch, train = recipe.invocations
    assert flag_problems(parser_for("accelerate launch"), launch.words) == [
        "--mixed_precision 'bf17': not one of ['no', 'fp16', 'bf16', 'fp8']"
    ]
    assert flag_problems(parser_for("train_wan.py"), train.words) == [
        "--lerning_rate: no such flag",
        "--gradient_checkpointing takes no value, got 'true'",
    ]
