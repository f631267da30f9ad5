"""The planner and its Plan: pure, frozen, the batch size / learning rate / schedule decisions with their reasons,
and plan.json (the same file as before the Plan was typed). Fast: no training, no data read."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepmed.applications import get_application
from deepmed.errors import DeepMedError
from deepmed.planning.plan import PLAN_FILE, NetworkChoice, Plan, Schedule, format_plan
from deepmed.planning.planner import ITERATIONS_PER_EPOCH, make_plan, resolved_config
from deepmed.training.config import resolve_config

SEGMENTATION = get_application("segmentation")

#: A plan.json written before the Plan was typed (a segmentation model of the brain MR scan, trimmed network
#: arguments): no batch-size reasons, no lr_peak, no init. It must load, and save back unchanged.
OLD_PLAN = {
    "format": "deepmed-plan/1", "application": "segmentation", "device": "cpu",
    "dataset": {"name": "brain", "cases": 1, "spacing": {"median": [0.78125, 0.78125, 6.5],
                                                         "p10": [0.78125, 0.78125, 6.5]},
                "size": {"median": [256.0, 256.0, 23.0]}},
    "reasons": {"spacing": "anisotropic", "patch_size": "from the configuration", "sampling": "foreground-biased",
                "network": "3 down-samplings", "schedule": "2 epochs of 3 iterations"},
    "channel_names": ["MR"], "spacing": [0.78125, 0.78125, 6.5], "patch_size": [32, 32, 8],
    "normalization": ["zscore_foreground"], "sampling": "foreground",
    "network": {"name": "unet", "args": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                         "channels": [16, 32, 64, 128], "strides": [[1, 2, 2]] * 3}},
    "loss": "dice_ce",
    "schedule": {"iterations_per_epoch": 3, "epochs": 2, "time_limit_s": None, "batch_size": 2, "lr": 0.001,
                 "lr_schedule": "cosine", "validate_every": 1, "validation_share": 0.1},
}


def fingerprint(spacing=(1.0, 1.0, 2.0), size=(96, 96, 48), labels=None, fractions=None, cases=4) -> dict:
    labels = {"background": 0, "organ": 1} if labels is None else labels
    fp = {"name": "made", "cases": cases, "channel_names": ["CT"], "labels": labels,
          "spacing": {"median": list(spacing), "p10": list(spacing)}, "size": {"median": [float(n) for n in size]}}
    if fractions:
        fp["label_fractions"] = fractions
    return fp


def test_the_same_inputs_give_the_same_plan_and_the_inputs_are_left_alone():
    config, fp = resolve_config({}, []), fingerprint()
    config_before, fp_before = copy.deepcopy(config), copy.deepcopy(fp)
    first, second = make_plan(SEGMENTATION, fp, config, "cpu", 600), make_plan(SEGMENTATION, fp, config, "cpu", 600)
    assert first == second and first.to_json() == second.to_json()
    assert config == config_before and fp == fp_before
    assert make_plan(SEGMENTATION, fp, config, "cuda", 600) != first  # the device is an input


def test_a_plan_refuses_edits_and_changes_are_new_values():
    plan = make_plan(SEGMENTATION, fingerprint(), resolve_config({}, []), "cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.network = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.schedule.batch_size = 64
    for mapping in (plan.reasons, plan.specific, plan.dataset, plan.network.args):
        with pytest.raises(TypeError):
            mapping["anything"] = 1
    assert pickle.loads(pickle.dumps(plan)) == plan == copy.deepcopy(plan)  # data-loader workers (spawn)
    tuned = plan.with_init({"model": "m"}, loaded_tensors=3)
    assert plan.init is None and dict(tuned.init) == {"model": "m", "loaded_tensors": 3}
    told = plan.with_reasons(lr_peak="why")
    assert "lr_peak" not in plan.reasons and told.reasons["lr_peak"] == "why"


def test_auto_batch_size_and_learning_rate_are_the_applications_and_the_configuration_wins():
    fp = fingerprint()
    auto = make_plan(SEGMENTATION, fp, resolve_config({}, []), "cpu")
    defaults = SEGMENTATION.training_defaults(auto, fp, "cpu")
    assert (auto.schedule.batch_size, auto.schedule.lr) == (defaults.batch_size, defaults.lr)
    assert auto.reasons["batch_size"].startswith("segmentation:") and auto.reasons["lr"].startswith("segmentation:")
    named = make_plan(SEGMENTATION, fp, resolve_config({"training": {"batch_size": 5}, "optimizer": {"lr": 0.02}}),
                      "cpu")
    assert (named.schedule.batch_size, named.schedule.lr) == (5, 0.02)
    assert "training.batch_size" in named.reasons["batch_size"] and "optimizer.lr" in named.reasons["lr"]
    config = resolved_config(resolve_config({}, []), auto)
    assert (config["training"]["batch_size"], config["optimizer"]["lr"]) == (defaults.batch_size, defaults.lr)


def test_a_time_budget_and_a_number_of_epochs_plan_different_schedules():
    fp = fingerprint()
    by_epochs = make_plan(SEGMENTATION, fp, resolve_config({"training": {"epochs": 7}}), "cpu")
    assert by_epochs.schedule.time_limit_s is None and by_epochs.schedule.epochs == 7
    assert by_epochs.schedule.iterations_per_epoch == ITERATIONS_PER_EPOCH
    assert by_epochs.schedule.validate_every == "auto" and "validation" in by_epochs.reasons
    timed = make_plan(SEGMENTATION, fp, resolve_config({"training": {"epochs": 7}}), "cpu", 600)
    assert timed.schedule.time_limit_s == 600.0 and "600" in timed.reasons["schedule"]
    fixed = make_plan(SEGMENTATION, fp, resolve_config({"training": {"iterations_per_epoch": 9, "val_every": 2}}),
                      "cpu")
    assert (fixed.schedule.iterations_per_epoch, fixed.schedule.validate_every) == (9, 2)
    assert "validation" not in fixed.reasons


def test_the_learning_rate_schedule_is_flat_under_a_time_budget_cosine_by_epochs_and_the_configuration_wins():
    fp = fingerprint()
    assert make_plan(SEGMENTATION, fp, resolve_config({}), "cpu", 189).schedule.lr_schedule == "wsd"
    assert make_plan(SEGMENTATION, fp, resolve_config({}), "cpu").schedule.lr_schedule == "cosine"
    named = make_plan(SEGMENTATION, fp, resolve_config({"scheduler": {"name": "poly"}}), "cpu", 189)
    assert named.schedule.lr_schedule == "poly" and "scheduler.name" in named.reasons["lr_schedule"]
    assert resolved_config(resolve_config({}), named)["scheduler"]["name"] == "poly"


def test_the_wsd_schedule_is_flat_then_decays_to_zero_over_the_last_tenth():
    from deepmed.optim import DECAY_SHARE, learning_rate_factor

    flat = [learning_rate_factor("wsd", p) for p in np.linspace(0, 1 - DECAY_SHARE, 50)]
    tail = [learning_rate_factor("wsd", p) for p in np.linspace(1 - DECAY_SHARE, 1, 50)]
    assert flat == [1.0] * 50
    assert all(a >= b for a, b in itertools.pairwise(tail)) and tail[-1] == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_factor("wsd", 1 - DECAY_SHARE / 2) == pytest.approx(0.5)


def test_plan_json_round_trips_and_an_old_plan_json_loads_and_saves_unchanged(tmp_path):
    plan = make_plan(SEGMENTATION, fingerprint(), resolve_config({}, []), "cpu", 300)
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert Plan.load(plan.save(tmp_path / PLAN_FILE)) == plan
    (tmp_path / "old.json").write_text(json.dumps(OLD_PLAN))
    old = Plan.load(tmp_path / "old.json")
    assert old.schedule == Schedule(3, 2, None, 2, 0.001, "cosine", 1, 0.1, lr_peak=1.0)
    assert old.network == NetworkChoice("unet", OLD_PLAN["network"]["args"]) and old.loss == "dice_ce"
    assert old["patch_size"] == [32, 32, 8] and old.sampling == "foreground" and old.init is None
    assert old.to_json() == OLD_PLAN


def test_a_fine_tuned_plan_keeps_its_init_and_learning_rate_peak_through_json():
    data = copy.deepcopy(OLD_PLAN)
    data["schedule"]["lr_peak"] = 0.2
    data["init"] = {"model": "boxes", "fold": None, "loaded_tensors": 140, "reinitialized": ["head.weight"]}
    plan = Plan.from_json(data)
    assert plan.schedule.lr_peak == 0.2 and plan.init["reinitialized"] == ["head.weight"]
    assert plan.to_json() == data


@pytest.mark.parametrize("change, named", [
    (lambda d: d.pop("schedule"), "schedule"),
    (lambda d: d["schedule"].pop("batch_size"), "batch_size"),
    (lambda d: d.update(format="deepmed-plan/9"), "format"),
    (lambda d: d.update(network=["unet"]), "network"),
])
def test_a_broken_plan_json_is_refused_naming_the_file_and_the_key(tmp_path, change, named):
    data = copy.deepcopy(OLD_PLAN)
    change(data)
    path = tmp_path / PLAN_FILE
    path.write_text(json.dumps(data))
    with pytest.raises(DeepMedError) as error:
        Plan.load(path)
    assert str(path) in str(error.value) and named in str(error.value)
    path.write_text("{not json")
    with pytest.raises(DeepMedError, match=PLAN_FILE):
        Plan.load(path)


def test_the_application_section_reads_by_key_and_may_not_shadow_a_typed_field():
    plan = Plan.from_json(OLD_PLAN)
    assert "spacing" in plan and "schedule" not in plan and plan.get("missing", 7) == 7
    with pytest.raises(KeyError, match="missing"):
        plan["missing"]
    with pytest.raises(DeepMedError, match="schedule"):
        dataclasses.replace(plan, specific={"schedule": 1})


def test_a_shared_plan_gives_its_decisions_and_each_run_keeps_its_schedule_and_dataset():
    config = resolve_config({}, [])
    shared = make_plan(SEGMENTATION, fingerprint(size=(200, 200, 100), cases=10), config, "cpu")
    own = make_plan(SEGMENTATION, fingerprint(size=(64, 64, 32), cases=8), config, "cpu", 120)
    fold = own.with_shared(shared)
    assert fold.network == shared.network and fold["patch_size"] == shared["patch_size"]
    assert fold.schedule == own.schedule and fold.dataset == own.dataset
    assert "cross-validation" in fold.reasons["patch_size"] and "cross-validation" in fold.reasons["network"]
    assert own["patch_size"] != shared["patch_size"]  # the fixture differs, so the test can fail


def test_format_plan_shows_every_decision_and_every_reason():
    plan = make_plan(SEGMENTATION, fingerprint(), resolve_config({}, []), "cpu", 600)
    text = format_plan(plan)
    decisions = [line.split()[0] for line in text.split("why:")[0].splitlines()[1:] if line.split()]
    assert {"patch_size", "spacing", "network", "schedule", "sampling"} <= set(decisions)
    why = text.split("why:")[1]
    assert all(key in why for key in plan.reasons)


spacings = st.tuples(*[st.floats(0.3, 6.0, allow_nan=False)] * 3)
sizes = st.tuples(*[st.integers(16, 512)] * 3)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(app=st.sampled_from(["segmentation", "regression"]), spacing=spacings, size=sizes,
       classes=st.integers(1, 4), device=st.sampled_from(["cpu", "cuda"]),
       budget=st.one_of(st.none(), st.floats(10, 1e5)))
def test_any_fingerprint_plans_purely_within_the_device_budget_and_round_trips(app, spacing, size, classes,
                                                                              device, budget):
    labels = {"background": 0, **{f"l{i}": i for i in range(1, classes + 1)}} if app == "segmentation" else {}
    fp = fingerprint(spacing, size, labels)
    config = resolve_config({"app": app}, [])
    application = get_application(app)
    plan = make_plan(application, fp, config, device, budget)
    assert plan == make_plan(application, fp, config, device, budget)
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert plan.schedule.batch_size >= 1 and plan.schedule.lr > 0
    assert (plan.schedule.time_limit_s is None) == (not budget)
    voxels = int(np.prod(plan["patch_size"]))
    assert voxels <= (128 ** 3 if device == "cuda" else 48 ** 3) * 1.5, (plan["patch_size"], device)
    assert all(plan.reasons[key] for key in ("spacing", "patch_size", "network", "batch_size", "lr", "schedule"))
