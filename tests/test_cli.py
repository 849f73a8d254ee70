"""The console script as a user meets it: help, dry runs, clear one-line errors."""
import json
import subprocess
import sys

import pytest

from cyclekit.cli import main


def test_help_does_not_import_torch():
    code = "import sys; from cyclekit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dry_run_prints_resolved_config(capsys):
    assert main(["train", "--preset", "tf1_tutorial", "--batch-size", "3", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["ngf"] == 32 and cfg["train"]["batch_size"] == 3


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--dataroot", "/no/such/folder", "--max-steps", "1"], "/no/such/folder"),
        (["train", "--preset", "nope"], "unknown preset"),
        (["train", "--config", "/no/config.json"], "config file not found"),
        (["translate", "x.png", "--model", "/no/model", "--out", "o"], "model not found"),
        (["train", "--resume", "/no/run"], "not a run directory"),
        (["data", "synth", "--world", "atlantis", "--out", "o"], "atlantis"),
    ],
)
def test_user_errors_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_translate_info_end_to_end(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--dataroot", str(tiny_world), "--run-dir", str(run), "--n-blocks", "1", "--ngf", "4",
            "--ndf", "4", "--load-size", "36", "--crop-size", "32", "--max-steps", "2", "--progress", "false"]
    assert main(argv) == 0
    assert main(["translate", str(tiny_world / "testA"), "--model", str(run), "--out", str(tmp_path / "o"),
                 "--direction", "BtoA"]) == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 3
    assert main(["info", str(run), "--size", "32"]) == 0
    assert "params=" in capsys.readouterr().out


def _all_parsers():
    import argparse

    from cyclekit.cli import build_parser

    todo = [("cyclekit", build_parser())]
    while todo:
        name, parser = todo.pop()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]


def test_every_flag_is_described():
    """`--help` explains every option: config flags take their text from the config's comments."""
    import argparse

    bare = [f"{name} {action.option_strings or action.dest}" for name, parser in _all_parsers()
            for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            and (not (action.help or "").strip() or (action.help or "").startswith("(default"))]
    assert bare == []


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("content, needle", [
    (b"[1, 2, 3]", "expected a JSON object"),
    (b"\xff\xfe\x00not utf8", "not a UTF-8 text file"),
    (b"{\"model\": {\"ngf\": -8}}", "ngf must be between"),
])
def test_bad_config_files_are_one_line(tmp_path, capsys, content, needle):
    cfg = tmp_path / "config.json"
    cfg.write_bytes(content)
    assert main(["train", "--config", str(cfg), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
