"""The miniature's command line (benchmarks/emergence/commands.py): which command runs what, with which settings."""

import json
from pathlib import Path

import pytest

import emergence.commands as commands
import emergence.freeform_compare as compare_module
import emergence.freeform_pipeline as pipeline_module
from emergence.commands import FREEFORM_CHECKPOINT, QUICK_CHANGES, main
from emergence.freeform_compare import FINAL_EVAL_SEED
from emergence.freeform_rl import METHODS, FreeformRLSettings


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(compare_module, "compare_freeform", lambda ck, out, settings, seeds, methods, lanes: seen.append(
        ("compare", ck, out, settings, list(seeds), list(methods), lanes)))
    monkeypatch.setattr(pipeline_module, "run_pipeline", lambda out, seed, threads: seen.append(("pipeline", out, seed, threads)) or out / "checkpoint")
    return seen


def test_the_default_command_is_the_free_form_comparison_from_the_committed_base(calls):
    assert main([]) == 0
    (_, checkpoint, output, settings, seeds, methods, lanes), = calls
    assert checkpoint == FREEFORM_CHECKPOINT and (FREEFORM_CHECKPOINT / "config.json").exists()
    assert output == Path("outputs/emergence") and seeds == [0, 1, 2] and methods == list(METHODS) and lanes == 2
    defaults = FreeformRLSettings()
    assert settings.eval_seed == FINAL_EVAL_SEED != defaults.eval_seed
    assert (settings.steps, settings.learning_rate, settings.top_p) == (defaults.steps, defaults.learning_rate, defaults.top_p)


def test_quick_is_one_rl_seed_with_fewer_steps_and_keeps_what_settings_name(calls):
    main(["--quick"])
    _, _, output, settings, seeds, _, _ = calls[-1]
    assert output == Path("outputs/emergence-quick") and seeds == [0]
    assert {k: getattr(settings, k) for k in QUICK_CHANGES} == QUICK_CHANGES and settings.eval_seed == FINAL_EVAL_SEED
    main(["--quick", "--settings", '{"eval_questions": 80}', "--seeds", "4", "5"])
    _, _, _, settings, seeds, _, _ = calls[-1]
    assert (settings.eval_questions, settings.steps, seeds) == (80, QUICK_CHANGES["steps"], [4])
    main(["--steps", "12", "--methods", "mgpo", "oracle"])
    _, _, _, settings, _, methods, _ = calls[-1]
    assert (settings.steps, settings.eval_every, methods) == (12, 12, ["mgpo", "oracle"])


def test_supervised_runs_the_pipeline_for_each_base_seed(calls, tmp_path):
    assert main(["supervised", "--output", str(tmp_path), "--base-seeds", "3", "--threads", "2"]) == 0
    assert calls == [("pipeline", tmp_path / "seed-3", 3, 2)]
    calls.clear()
    main(["supervised", "--output", str(tmp_path), "--base-seeds", "0", "1", "--lanes", "1"])
    assert [c[1:3] for c in calls] == [(tmp_path / "seed-0", 0), (tmp_path / "seed-1", 1)]
    calls.clear()
    main(["supervised", "--base-seeds", "4"])
    assert calls[0][1] == Path("outputs/emergence/supervised/seed-4")


def test_several_base_seeds_run_in_parallel_lanes_that_build_where_supervise_looks(calls, monkeypatch, tmp_path):
    launched = {}
    monkeypatch.setattr(commands, "_run_parallel", lambda cmds, lanes, logs: launched.update(cmds=cmds, lanes=lanes, logs=logs))
    bases = commands.supervise(tmp_path / "bases", [0, 1, 0], lanes=2, threads=2)
    assert launched["lanes"] == 2 and len(launched["cmds"]) == 2
    for command in launched["cmds"]:  # each lane is this command line again, one seed and one thread
        assert command[command.index("--threads") + 1] == "1"
        assert main(command[command.index("supervised"):]) == 0
    assert [(c[1] / "checkpoint", c[2], c[3]) for c in calls] == [(bases[0], 0, 1), (bases[1], 1, 1)]
    assert bases == {0: tmp_path / "bases" / "seed-0" / "checkpoint", 1: tmp_path / "bases" / "seed-1" / "checkpoint"}


def test_from_scratch_compares_from_each_base_it_built(calls, tmp_path):
    assert main(["--from-scratch", "--output", str(tmp_path), "--base-seeds", "5", "--lanes", "1", "--quick"]) == 0
    assert calls[0] == ("pipeline", tmp_path / "supervised" / "seed-5", 5, 1)
    assert calls[1][1:3] == (tmp_path / "supervised" / "seed-5" / "checkpoint", tmp_path / "base-seed5")


@pytest.mark.parametrize("argv", [["supervised", "--quick"], ["supervised", "--settings", "{}"], ["supervised", "--checkpoint", "x"],
                                  ["supervised", "--steps", "5"], ["freeform-rl", "--base-settings", "{}"], ["freeform-rl", "--methods", "mgpo"],
                                  ["freeform-rl", "--from-scratch"], ["freeform-report", "--checkpoint", "x"], ["all", "--method", "oracle"],
                                  ["cell", "--methods", "mgpo"], ["cell-gates", "--settings", "{}"], ["--from-scratch", "--checkpoint", "x"]])
def test_options_a_command_would_ignore_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and "error:" in capsys.readouterr().err


def test_the_comparison_alias_takes_what_the_default_takes(calls):
    main(["freeform-compare", "--quick", "--checkpoint", "somewhere"])
    assert calls[-1][1] == Path("somewhere") and calls[-1][4] == [0]


def test_the_cell_comparison_launches_commands_the_cell_commands_accept(monkeypatch, tmp_path):
    import emergence.experiment as experiment

    launched = []
    monkeypatch.setattr(experiment, "_run_parallel", lambda cmds, lanes, logs: launched.extend(cmds))
    monkeypatch.setattr(experiment, "write_report", lambda output, seconds, checkpoint: {})
    experiment.compare(tmp_path, tmp_path / "out", experiment.RLSettings(steps=3), [0, 1])
    assert len(launched) == 2 + 2 * 2
    p = commands.parser()
    for command in launched:
        args = p.parse_args(command[2:])
        commands.check_options(p, args)  # raises SystemExit on an option the command does not read
        assert args.command in ("cell-before", "cell-rl") and json.loads(args.settings)["steps"] == 3


def test_the_cell_version_keeps_its_commands(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(commands, "run_rl", lambda ck, protocol, seed, settings, out: seen.update(rl=(ck, protocol, seed, settings.steps, out)))
    monkeypatch.setattr(commands, "cell_compare", lambda ck, out, settings, seeds, lanes: seen.update(compare=(ck, out, settings.steps, list(seeds))))
    main(["cell-rl", "--protocol", "single_turn", "--seed", "4", "--steps", "7", "--output", str(tmp_path)])
    assert seen["rl"] == (commands.CELL_CHECKPOINT, "single_turn", 4, 7, tmp_path / "runs" / "single_turn-seed4")
    main(["cell", "--quick"])
    assert seen["compare"] == (commands.CELL_CHECKPOINT, Path("outputs/emergence-cell-quick"), 60, [0])
