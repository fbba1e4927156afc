"""Convergence you can see: every poison generation reports its progress live (log, MLflow) and
its card says whether it met its stop rule, was cut off by a cap, ran fixed steps, or had
nothing to iterate.

Tiny data (32 scenes of 16 px), test_resnet surrogates and one or two rounds / epochs keep the
file to seconds; the EM run that a cap cuts off goes through ``mtlue poison`` with a SQLite
MLflow store in tmp_path, as a workflow job does.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch

from mtlue.cli import main
from mtlue.data import TaskKind
from mtlue.methods import GenerationContext, MethodError, UEMethod, create_method, make_poison
from mtlue.methods.objectives import shifted_targets
from mtlue.methods.pgd import objective_value, split_source
from mtlue.methods.surrogate import load_surrogate
from mtlue.poisons import load_store, read_card
from victims.augment import CenterCrop

#: EM on tiny data: few, large PGD steps and a small surrogate.
EM_TINY = ["--set", "backbone=test_resnet", "--set", "steps=2", "--set", "step_size=2.0", "--set", "batch_size=16", "--set", "model_steps=2"]
#: One or two generator epochs of 16-sample batches.
MTLUE_TINY = {"batch_size": 16, "lr_milestones": [1]}
#: A log line as ``mtlue`` writes it: timestamp, level, logger name, message.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING) ([\w.]+): (.*)$")


def _mlflow_history(uri, run_id, key):
    from mlflow import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, key))


def test_em_cut_off_by_its_cap_says_so_in_the_log_the_card_and_mlflow(tiny_shapes, tmp_path, capsys):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "poisons" / "em"
    code = main([
        "poison", "--data", str(tiny_shapes.root), "--method", "em", "--out", str(out), "--num-threads", "1", *EM_TINY,
        "--set", "max_rounds=2", "--set", "stop_error=0", "--tracking-uri", uri,
    ])
    printed = capsys.readouterr()
    assert code == 0, printed.err

    convergence = read_card(out).convergence
    assert (convergence.converged, convergence.stopped_by, convergence.steps, convergence.cap) == (False, "cap", 2, 2)
    assert convergence.cap_hyperparameter == "max_rounds" and convergence.unit == "round"
    assert convergence.target == {"train_error": 0.0}
    assert [record["round"] for record in convergence.history] == [1, 2]
    assert all(set(record) == {"round", "train_error", "base_loss", "seconds"} for record in convergence.history)
    assert convergence.final == {"train_error": convergence.history[-1]["train_error"]} and convergence.final["train_error"] > 0

    # The log: one timestamped line per round while it runs, then a WARNING naming the cap.
    lines = [LOG_LINE.match(line) for line in printed.err.splitlines() if LOG_LINE.match(line)]
    ours = [(match[1], match[2], match[3]) for match in lines if match[2].startswith("mtlue")]
    rounds = [message for level, name, message in ours if level == "INFO" and message.startswith("em round ")]
    assert len(rounds) == 2 and rounds[0].startswith("em round 1/2: train_error ")
    assert "(stop at <= 0), base_loss " in rounds[0] and ", seconds " in rounds[0]
    (warning,) = [(name, message) for level, name, message in ours if level == "WARNING"]
    assert warning[0] == "mtlue.methods.progress"
    assert "cut off by its cap max_rounds = 2 after 2 round(s)" in warning[1] and "--set max_rounds=N" in warning[1]
    assert not LOG_LINE.match(printed.out.splitlines()[0])  # stdout still carries only the results
    assert printed.out.splitlines()[0].startswith("em on shapes/train: all samples poisoned")

    # MLflow: one value per round at step = round, and the outcome as tags.
    (run,) = MlflowClient(tracking_uri=uri).search_runs([MlflowClient(tracking_uri=uri).get_experiment_by_name("shapes").experiment_id])
    for key in ("train_error", "base_loss"):
        assert _mlflow_history(uri, run.info.run_id, key) == [(r["round"], pytest.approx(r[key])) for r in convergence.history]
    assert {"converged": "false", "stopped_by": "cap"}.items() <= run.data.tags.items()
    assert run.data.metrics["convergence/converged"] == 0.0 and run.data.metrics["convergence/steps"] == 2.0


def test_em_that_meets_its_rule_is_recorded_as_converged(tiny_shapes, tmp_path):
    method = create_method("em", backbone="test_resnet", steps=1, step_size=2.0, batch_size=16, model_steps=1, stop_error=0.99, max_rounds=5)
    store = make_poison(tiny_shapes, method, GenerationContext(seed=0), tmp_path / "em")
    convergence = store.card.convergence
    assert (convergence.converged, convergence.stopped_by, convergence.steps, convergence.cap) == (True, "stop_rule", 1, 5)
    assert convergence.final["train_error"] <= 0.99 and not convergence.cut_off


def test_tap_and_sep_run_their_fixed_steps_and_record_how_far_the_attack_got(tiny_shapes, surrogate, tmp_path):
    final, snapshots = surrogate
    quick = dict(steps=3, step_size=2.0, batch_size=16)
    store = make_poison(tiny_shapes, create_method("tap", **quick), GenerationContext(seed=0, surrogate=final), tmp_path / "tap")
    convergence = store.card.convergence
    assert (convergence.converged, convergence.stopped_by, convergence.unit, convergence.steps, convergence.cap) == (True, "fixed_steps", "batch", 2, None)
    assert "3 PGD steps of 2.0/255 per sample" in convergence.rule
    assert [record["samples"] for record in convergence.history] == [16, 16]

    # The final values are what the surrogate makes of the published images, recomputed here.
    model = load_surrogate(final, tiny_shapes)
    images, targets = split_source(tiny_shapes, torch.device("cpu")).batch(torch.arange(32))
    deltas = torch.from_numpy(np.asarray(load_store(tmp_path / "tap", tiny_shapes).deltas)).float()
    tasks, crop = tiny_shapes.tasks, tiny_shapes.crop_size
    view, view_targets = CenterCrop(tasks, crop)((images.float() + deltas) / 255, targets)
    with torch.no_grad():
        outputs = model(view)
    goal = shifted_targets(tasks, view_targets)
    errors = [
        float(((outputs[t.name] > 0).long() if t.kind is TaskKind.BINARY else outputs[t.name].argmax(1)).ne(goal[t.name].long()).float().mean())
        for t in tasks
    ]
    assert convergence.final["targeted_error"] == pytest.approx(np.mean(errors))
    assert convergence.final["objective"] == pytest.approx(objective_value([model], images, deltas, targets, tasks, objective="tap", crop_size=crop), rel=1e-5)

    sep = make_poison(tiny_shapes, create_method("sep", **quick), GenerationContext(seed=0, surrogate_checkpoints=snapshots), tmp_path / "sep")
    assert sep.card.convergence.stopped_by == "fixed_steps" and "the last of the 2 surrogates" in sep.card.convergence.rule
    assert 0 <= sep.card.convergence.final["targeted_error"] <= 1


def test_mtl_ue_reports_every_generator_epoch_and_its_stop_rule(tiny_shapes):
    method = create_method("mtlue-em", surrogate_backbone="test_resnet", max_epochs=2, **MTLUE_TINY)
    context = GenerationContext(seed=0)
    method.generate(tiny_shapes, context)
    convergence = context.monitor.convergence
    assert (convergence.converged, convergence.stopped_by, convergence.steps, convergence.cap_hyperparameter) == (False, "cap", 2, "max_epochs")
    assert convergence.target == {"binary_error": 0.01, "multiclass_error": 0.01}
    last = convergence.history[-1]
    assert {"epoch", "loss", "base_loss", "intra_task", "inter_task", "binary_error", "multiclass_error", "lr", "seconds", "errors"} == set(last)
    assert convergence.final == {"binary_error": last["binary_error"], "multiclass_error": last["multiclass_error"]}
    binary = [t.name for t in tiny_shapes.tasks if t.kind is TaskKind.BINARY]
    assert last["binary_error"] == pytest.approx(np.mean([last["errors"][name] for name in binary]))
    # The same epochs as the method's own history (printed by `mtlue poison`).
    assert [(r["epoch"], r["loss"]) for r in convergence.history] == [(r["epoch"], r["loss"]) for r in method.history]

    # A rule that holds after the first epoch ends the run there.
    met = create_method("mtlue-em", surrogate_backbone="test_resnet", max_epochs=3, stop_error_binary=1.0, stop_error_multiclass=1.0, **MTLUE_TINY)
    met.generate(tiny_shapes, context)
    assert (context.monitor.convergence.stopped_by, context.monitor.convergence.steps) == ("stop_rule", 1)


def test_closed_form_methods_say_so_and_a_silent_method_is_unreported(tiny_shapes, tmp_path, caplog):
    for name in ("clean", "lsp"):
        convergence = make_poison(tiny_shapes, create_method(name), GenerationContext(), tmp_path / name).card.convergence
        assert (convergence.converged, convergence.stopped_by, convergence.steps, convergence.history) == (True, "closed_form", 0, ())

    class Silent(UEMethod):
        """Iterates (say) but reports nothing: a plugin written before progress reports."""

        def generate_deltas(self, dataset, context):
            return np.zeros((len(dataset.split("train")), *dataset.image_shape), dtype=np.int8)

    with caplog.at_level(logging.WARNING, logger="mtlue.methods.progress"):
        convergence = make_poison(tiny_shapes, Silent(), GenerationContext(), tmp_path / "silent").card.convergence
    assert (convergence.converged, convergence.stopped_by) == (None, "unreported")
    assert "reported no progress and does not declare itself closed form" in caplog.text

    class Unfinished(Silent):
        def generate_deltas(self, dataset, context):
            context.monitor.begin(rule="never checked", unit="round", cap=3, cap_hyperparameter="rounds")
            context.monitor.step(1, {"loss": 1.0})
            return super().generate_deltas(dataset, context)

    with pytest.raises(MethodError, match="reported 1 round\\(s\\) but not how its run ended .* a bug in the method"):
        Unfinished().generate(tiny_shapes, GenerationContext())


def test_listeners_get_every_record_as_it_is_reported(tiny_shapes, surrogate):
    seen = []
    context = GenerationContext(seed=0, surrogate=surrogate[0])
    context.monitor.add_listener(lambda step, values: seen.append((step, dict(values))))
    create_method("tap", steps=1, batch_size=16).generate(tiny_shapes, context)
    assert [step for step, _ in seen] == [1, 2]
    assert [dict(values, batch=step) for step, values in seen] == [dict(record) for record in context.monitor.convergence.history]
    assert json.dumps(seen)  # plain JSON values, as MLflow and the card take them
