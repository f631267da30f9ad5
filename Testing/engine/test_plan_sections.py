"""The applications' typed plan sections and task settings, and the typed augmentation / inference settings:
they read what plan.json and a resolved configuration hold, unchanged, and name what is missing."""

from __future__ import annotations

import pytest

from deepmed.applications.plan_sections import ClassesPlanSection, ConditionalGanPlanSection, DensePlanSection
from deepmed.applications.task_settings import CaseRegressionTask, ClassificationTask, ConditionalGanTask
from deepmed.errors import DeepMedError
from deepmed.planning.plan import Plan, Schedule
from deepmed.planning.settings import InferenceSettings
from deepmed.training.config import resolve_config
from deepmed.transforms.augmentation import AugmentationSettings, augmentation_transforms

DENSE = {"channel_names": ["ct"], "spacing": [1.5, 1.5, 3.0], "patch_size": [64, 64, 32], "normalization": ["ct"]}


def _plan(specific: dict) -> Plan:
    return Plan("segmentation", "cpu", {}, {}, Schedule(1, 1, None, 2, 1e-3, "cosine", "auto", 0.1),
                specific=specific)


def test_a_section_reads_the_plans_entries_as_they_are_and_round_trips_through_plan_json(tmp_path):
    plan = Plan.load(_plan(DENSE).save(tmp_path / "plan.json"))
    section = DensePlanSection.of(plan)
    assert (section.spacing, section.patch_size, section.normalization) == ([1.5, 1.5, 3.0], [64, 64, 32], ["ct"])
    assert section.inference == {}  # optional: validation uses the sliding window's defaults
    section.spacing.append(9.0)  # a copy: the frozen plan is untouched
    assert plan["spacing"] == [1.5, 1.5, 3.0]


def test_a_missing_entry_is_one_error_naming_plan_json_and_the_key():
    with pytest.raises(DeepMedError) as error:
        DensePlanSection.of(_plan({k: v for k, v in DENSE.items() if k != "patch_size"}))
    assert "plan.json" in str(error.value) and "'patch_size'" in str(error.value)
    with pytest.raises(DeepMedError, match="class_values"):
        ClassesPlanSection.of({"classes": ["a", "b"]}).values()


def test_the_gan_section_reads_each_networks_adam_and_names_a_missing_one():
    optimizers = {"generator": {"name": "adam", "lr": 5e-4, "betas": [0.5, 0.999]}}
    section = ConditionalGanPlanSection.of({"channel_names": ["image"], "grid": {}, "conditions": [],
                                            "discriminator": {"name": "projection_discriminator", "args": {"a": 1}},
                                            "optimizers": optimizers})
    assert (section.optimizer("generator").lr, section.optimizer("generator").betas) == (5e-4, [0.5, 0.999])
    assert section.discriminator_network().plain_args() == {"a": 1}
    with pytest.raises(DeepMedError, match="discriminator"):
        section.optimizer("discriminator")


def test_task_settings_read_the_resolved_task_section_and_name_a_missing_key():
    config = resolve_config({"app": "classification", "task": {"classes": ["a", "b"]}})
    assert ClassificationTask.from_config(config) == ClassificationTask(["a", "b"], True)
    regression = resolve_config({"app": "case_regression", "task": {"unit": "years"}})
    assert CaseRegressionTask.from_config(regression).card_target() == {"unit": "years"}
    with pytest.raises(DeepMedError) as error:
        ConditionalGanTask.from_config(config)
    assert "task.image_size" in str(error.value)


def test_inference_settings_give_the_cards_section_as_the_configuration_has_it():
    config = resolve_config({"inference": {"sw_batch_size": 4, "overlap": 0.25}})
    assert InferenceSettings.from_config(config).to_json() == config["inference"]
    assert list(InferenceSettings.from_config(config).to_json()) == list(config["inference"])


def test_augmentation_settings_choose_the_transforms():
    config = resolve_config({"augmentation": {key: False for key in ("flip", "rotate", "scale", "elastic", "noise",
                                                                     "gamma", "bias_field", "contrast")}})
    assert augmentation_transforms(AugmentationSettings.from_config(config), True) == []
    flips = resolve_config({"augmentation": {"rotate": False, "scale": False, "noise": False, "gamma": False,
                                             "contrast": False}})
    assert len(augmentation_transforms(AugmentationSettings.from_config(flips), True)) == 3  # one per axis
