"""CPU levers of training chosen by the engine: how OpenMP's idle threads wait (spinning on a quiet CPU, sleeping
beside busy processes, the user's setting first) and bf16 autocast of the training step on CPUs with native bf16."""

from __future__ import annotations

import pytest
import torch

from deepmed.applications import get_application
from deepmed.applications.base import StepContext
from deepmed.utils.openmp import CHOSEN, choose_wait_policy, other_runnable_tasks
from deepmed.volume_inference.sliding import cpu_supports_bf16


def loadavg(tmp_path, running: int):
    path = tmp_path / f"loadavg_{running}"
    path.write_text(f"1.00 0.80 0.50 {running}/321 4242\n")
    return path


def test_sleeping_threads_only_when_other_processes_are_running(tmp_path):
    quiet, busy = loadavg(tmp_path, 1), loadavg(tmp_path, 3)  # "running" counts the reader
    assert other_runnable_tasks(quiet, samples=2, interval_s=0) == 0
    assert other_runnable_tasks(busy, samples=2, interval_s=0) == 2
    env: dict[str, str] = {}
    assert choose_wait_policy(env, quiet) is None and "OMP_WAIT_POLICY" not in env
    assert choose_wait_policy(env, busy) == "PASSIVE" and env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_users_setting_wins_and_an_inherited_choice_is_made_again(tmp_path):
    quiet = loadavg(tmp_path, 1)
    for users in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "1000"}):
        env = dict(users)
        assert choose_wait_policy(env, quiet) is None and env == users
    inherited = {"OMP_WAIT_POLICY": "PASSIVE", CHOSEN: "PASSIVE"}  # a deepmed parent chose it on a busy CPU
    assert choose_wait_policy(inherited, quiet) is None and inherited == {}


def test_without_proc_loadavg_openmp_keeps_its_default(tmp_path):
    env: dict[str, str] = {}
    assert other_runnable_tasks(tmp_path / "missing") is None
    assert choose_wait_policy(env, tmp_path / "missing") is None and env == {}


def test_segmentation_trains_in_bf16_on_a_cpu_with_native_bf16_and_float32_elsewhere_or_when_asked():
    cpu = torch.device("cpu")
    assert get_application("segmentation").cpu_bf16_training
    on = StepContext(cpu, amp=True, cpu_bf16=True)
    assert on.amp == cpu_supports_bf16()
    if on.amp:
        assert on.dtype == torch.bfloat16 and not on.scaler("model").is_enabled()
        with on.autocast():
            assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.bfloat16
    assert not StepContext(cpu, amp=False, cpu_bf16=True).amp  # training.amp: off
    assert not StepContext(cpu, amp=True).amp  # an application that keeps float32


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")
def test_a_bf16_training_step_lowers_the_loss_and_keeps_float32_weights():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 2, 1))
    optimizer = torch.optim.AdamW(net.parameters(), 1e-2)
    step = StepContext(torch.device("cpu"), amp=True, cpu_bf16=True)
    x = torch.randn(2, 1, 8, 8, 8)
    target = (x[:, 0] > 0).long()
    losses = []
    for _ in range(30):
        with step.autocast():
            loss = torch.nn.functional.cross_entropy(net(x).float(), target)
        step.optimize(loss, optimizer)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.dtype == torch.float32 for p in net.parameters())
