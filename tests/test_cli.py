"""The command line (tvae_book.cli): one argparse subcommand per stage, each taking only its own flags.

Parsing only, plus the dispatch with the stages stubbed out: nothing here executes a chapter or trains."""
from __future__ import annotations

import re

import pytest

from tvae_book import cli

CONFIG = {"--profile", "--seed", "--device", "--data-dir", "--param", "--chapters", "--root"}
RESULTS = {"--out", "--dry-run"}
EXECUTION = {"--workers", "--timeout", "--force", "--keep-going", "--verbose", "--quiet", "--weights"}
OWN_FLAGS = {
    "run": CONFIG | RESULTS | EXECUTION,
    "book": CONFIG | RESULTS | EXECUTION | {"--cdn", "--no-strict"},
    "report": CONFIG | RESULTS,
    "train": CONFIG | {"--workers", "--engine", "--slurm", "--threads", "--ensemble", "--plan-only"},
    "weights": CONFIG | {"--out", "--sha256", "--lock"},
}
ALL_FLAGS = set().union(*OWN_FLAGS.values())
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        cli.parse_args([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


# --------------------------------------------------------------------------- the callers' command lines


@pytest.mark.parametrize("line", [
    # Makefile (book, reproduce, train, report) with every optional variable set, README, .github/workflows
    "book --profile cpu --seed 0 --device auto --data-dir /d --param n_seeds=2 --param rows=all --workers auto",
    "run --profile paper --seed 0 --device auto --workers auto --dry-run 3",
    "train --profile paper --seed 0 --device auto --workers 4 --engine slurm --slurm slurm_partition=gpu "
    "--slurm timeout_min=720",
    "report --profile cpu --seed 0 --device auto --data-dir /d --param n_seeds=2",
    "book --cdn",
    # the tests' own calls (tests/test_runner.py, tests/test_plan.py)
    "run --profile smoke --root /r --out /o --timeout 120 --keep-going",
    "run --profile smoke --chapters 01_pot --out /o --workers 2 --dry-run 2",
])
def test_every_callers_command_line_still_parses(line: str) -> None:
    args = cli.parse_args(line.split())
    assert args.command == line.split()[0] and callable(args.handler)


def test_each_command_parses_its_own_flags() -> None:
    run = cli.parse_args(["run", "--profile", "smoke", "--seed", "3", "--device", "cpu", "--param", "a=1",
                          "--param", "b=x", "--chapters", "01_pot", "02_x", "--out", "o", "--dry-run",
                          "--workers", "2", "--timeout", "5", "--force", "--keep-going", "--verbose", "--quiet"])
    assert (run.profile, run.seed, run.device, run.param, run.chapters) == ("smoke", 3, "cpu", ["a=1", "b=x"],
                                                                          ["01_pot", "02_x"])
    assert (str(run.out), run.dry_run, run.workers, run.timeout) == ("o", 3, "2", 5.0)    # bare --dry-run: 3 steps
    assert run.force and run.keep_going and run.verbose and run.quiet
    book = cli.parse_args(["book", "--cdn", "--no-strict", "--dry-run", "2"])
    assert book.cdn and book.no_strict and book.dry_run == 2 and not book.force
    report = cli.parse_args(["report", "--out", "o", "--dry-run", "4"])
    assert (str(report.out), report.dry_run, report.profile) == ("o", 4, "cpu")
    train = cli.parse_args(["train", "--workers", "auto", "--engine", "slurm_local", "--slurm", "x=y",
                            "--threads", "1", "--plan-only", "--ensemble", "4"])
    assert (train.workers, train.engine, train.slurm, train.threads, train.plan_only) == ("auto", "slurm_local",
                                                                                         ["x=y"], 1, True)
    assert train.ensemble == "4" and cli.parse_args(["train"]).ensemble == "auto"


def test_ensemble_option_resolves_auto_off_and_rejects_nonsense(monkeypatch) -> None:
    import torch

    assert cli.resolve_ensemble("off") == 1 and cli.resolve_ensemble("7") == 7
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.resolve_ensemble("auto") == 1                         # a CPU: batching gains nothing
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli.resolve_ensemble("auto") == cli.ENSEMBLE_AUTO and cli.resolve_ensemble("auto", "cpu") == 1
    for bad in ("0", "-2", "many"):
        with pytest.raises(ValueError, match=f"--ensemble '{bad}' is not allowed: 'auto', 'off' or a positive"):
            cli.resolve_ensemble(bad)


def test_run_and_book_train_ahead_with_trains_defaults() -> None:
    """``run``/``book --workers N``: the training stage gets train's defaults (local jobs), not flags."""
    for command in ("run", "book"):
        args = cli.parse_args([command])
        assert (args.engine, args.slurm, args.threads, args.plan_only, args.ensemble) == ("local", (), None, False,
                                                                                          "auto")


# --------------------------------------------------------------------------- flags a command does not take


@pytest.mark.parametrize("argv", [
    ["report", "--workers", "2"], ["report", "--cdn"], ["report", "--force"],
    ["run", "--engine", "slurm"], ["run", "--cdn"], ["run", "--plan-only"], ["run", "--ensemble", "2"],
    ["book", "--slurm", "x=y"], ["book", "--threads", "2"],
    ["train", "--out", "o"], ["train", "--dry-run", "3"], ["train", "--timeout", "5"], ["train", "--no-strict"],
])
def test_a_flag_of_another_command_is_that_commands_error(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"python -m tvae_book {argv[0]}: error: unrecognized arguments: {' '.join(argv[1:])}" in err
    assert f"usage: python -m tvae_book {argv[0]} " in err                  # the command's own usage


@pytest.mark.parametrize("argv,message", [
    ([], "the following arguments are required: COMMAND"),
    (["serve"], "invalid choice: 'serve'"),
    (["train", "--engine", "cloud"], "invalid choice: 'cloud'"),
    (["run", "--seed", "one"], "invalid int value: 'one'"),
])
def test_bad_command_lines_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", sorted(OWN_FLAGS))
def test_command_help_names_its_own_flags_only(command: str, capsys) -> None:
    text = help_text(capsys, command)
    assert text.startswith(f"usage: python -m tvae_book {command} ")
    assert set(FLAG.findall(text)) == OWN_FLAGS[command] | {"--help"}


def test_top_level_help_lists_the_commands_and_the_docstring_every_flag(capsys) -> None:
    text = help_text(capsys)
    assert text.startswith("usage: python -m tvae_book [-h] COMMAND ...")
    commands = text.split("positional arguments:")[1].split("options:")[0]
    assert re.findall(r"^    (\w+) ", commands, re.MULTILINE) == ["run", "book", "report", "train", "weights"]
    # the module docstring (the description) names every flag, and no flag that is gone
    assert set(FLAG.findall(cli.__doc__)) == ALL_FLAGS | {"--help"}


# --------------------------------------------------------------------------- dispatch


@pytest.fixture()
def stages(monkeypatch, tmp_path):
    """The stages stubbed out: the calls each command makes, in order."""
    calls: list[tuple] = []
    monkeypatch.setattr(cli, "train", lambda args, config, root, chapters: calls.append(("train", args.workers,
                                                                                        tuple(chapters))) or 0)
    monkeypatch.setattr(cli, "run_chapters", lambda *a, **k: calls.append(("chapters", k["workers"])) or ([], []))
    monkeypatch.setattr(cli, "write_report", lambda chapters, out: calls.append(("report", out)) or out / "r.md")
    monkeypatch.setattr(cli, "stage_book", lambda *a: calls.append(("stage",)) or tmp_path)
    monkeypatch.setattr(cli, "build_html", lambda stage, root, strict: calls.append(("html", strict)) or "index")
    monkeypatch.setattr(cli, "fetch_vendor", lambda vendor: calls.append(("vendor",)) or False)
    return calls


def test_each_command_runs_its_own_stages(stages, tmp_path) -> None:
    base = ["--profile", "smoke", "--chapters", "01_pot"]
    assert cli.main(["report", *base, "--out", str(tmp_path)]) == 0
    assert stages == [("report", tmp_path.resolve())]
    stages.clear()
    assert cli.main(["train", *base, "--workers", "3", "--plan-only"]) == 0
    assert stages == [("train", 3, ("01_pot",))]                               # --workers resolved to an int
    stages.clear()
    assert cli.main(["run", *base, "--out", str(tmp_path)]) == 0
    assert stages == [("chapters", 1), ("report", tmp_path.resolve())]
    stages.clear()
    assert cli.main(["book", *base, "--out", str(tmp_path), "--cdn", "--no-strict"]) == 0
    assert stages == [("chapters", 1), ("report", tmp_path.resolve()), ("stage",), ("html", False)]


def test_report_of_a_dry_run_reads_the_dry_run_folder(stages) -> None:
    assert cli.main(["report", "--profile", "smoke", "--chapters", "01_pot", "--dry-run"]) == 0
    assert stages[0][1].parts[-2:] == ("_results", "smoke-dry-run")


def test_train_rejects_a_malformed_slurm_parameter(capsys) -> None:
    assert cli.main(["train", "--profile", "smoke", "--chapters", "01_pot", "--slurm", "no-equals"]) == 2
    assert "--slurm expects NAME=VALUE" in capsys.readouterr().err
