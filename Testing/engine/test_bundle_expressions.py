"""Bundle ``$`` expressions: the pure subset gives MONAI's own values; hostile ones are refused before any part
of them runs; shared tensors (DynUNet) are stored once and load back identical."""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naming import naming

from deepmed.model.card_values import decode
from deepmed.zoo.bundle_config import BundleConfig, BundleNeedsCode
from deepmed.zoo.bundle_expr import evaluate

CONFIG = {"spatial_size": [96, 96, 64], "highres": False, "sizes": {"small": 32, "large": 96}, "name": "model",
          "bundle_root": ".", "scale": 1.5, "labels": {"background": 0, "liver": 1, "spleen": 2}}
#: pure expressions of the kinds the model zoo writes; MONAI's ConfigParser evaluates them as the reference
PURE = [
    "$len(@spatial_size)", "$[1.5, 1.5, 1.5] if @highres else [3.0, 3.0, 3.0]",
    "$'model.pt' if @highres else 'model_lowres.pt'", "$@bundle_root + '/models/' + @name + '.pt'",
    "$@spatial_size[0] // 2", "$@spatial_size[:2] if True else 0", "$max(@spatial_size)",
    "$min(@spatial_size) * @scale", "$sum(@spatial_size)", "$int(@scale * 10) % 4", "$round(@scale / 3, 2)",
    "$abs(-@sizes#small) ** 2", "$list(range(1, 4))", "$tuple(@spatial_size)", "$@sizes['large'] - 1",
    "$not @highres and len(@labels) == 3", "$@highres or 'fallback'", "$2 in @spatial_size or 64 in @spatial_size",
    "$[@scale] * 3", "${'a': 1, 'b': [1, 2]}", "$len(@labels) - 1", "$1 < @scale <= 2",
    "$monai.utils.CommonKeys.IMAGE", "$monai.utils.CommonKeys.PRED", "$float(@sizes#small)", "$-@scale",
]


def _monai_value(expression: str):
    from monai.bundle import ConfigParser

    parser = ConfigParser({**CONFIG, "value": expression})
    return parser.get_parsed_content("value")


@pytest.mark.parametrize("expression", PURE)
def test_pure_expressions_give_monai_s_values(expression):
    config = BundleConfig({**CONFIG, "value": expression}, "b")
    ours = config.get("value")
    expected = _monai_value(expression)
    assert ours == (str(expected) if hasattr(expected, "value") else expected)  # CommonKeys: a str enum
    assert type(ours) is type(expected) or isinstance(expected, str)


def test_dtypes_and_devices_become_card_values_monai_takes():
    config = BundleConfig({"dtype": "$torch.float32", "np": "$numpy.int16",
                           "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"}, "b")
    assert decode(config.get("dtype")) is torch.float32
    import numpy

    assert decode(config.get("np")) is numpy.int16
    assert config.get("device") == {"$device": "user"} and decode(config.get("device")) is None


def test_set_reaches_expressions_through_the_entry_or_a_parent():
    raw = {"displayable_configs": {"highres": True}, "pixdim": "$[1.5] * 3 if @displayable_configs#highres else [3.0] * 3"}
    assert BundleConfig(raw, "b").get("pixdim") == [1.5, 1.5, 1.5]
    child = BundleConfig(raw, "b", values={"displayable_configs#highres": False})
    assert child.get("pixdim") == [3.0, 3.0, 3.0] and child.used == {"displayable_configs#highres"}
    parent = BundleConfig(raw, "b", values={"displayable_configs": {"highres": False}})
    assert parent.get("pixdim") == [3.0, 3.0, 3.0] and parent.used == {"displayable_configs"}


# ---- hostile expressions ----------------------------------------------------------------------------------
HOSTILE = [
    "__import__('os').system('touch {mark}')", "open('{mark}', 'w')", "exec(\"open('{mark}', 'w')\")",
    "eval(\"open('{mark}', 'w')\")", "(lambda: open('{mark}', 'w'))()", "[open('{mark}', 'w') for _ in [1]]",
    "{k: open('{mark}', 'w') for k in [1]}", "list(open('{mark}', 'w') for _ in [1])",
    "().__class__.__bases__[0].__subclasses__()", "(1).__class__", "''.__class__.__mro__", "getattr(1, 'real')",
    "globals()", "locals()", "vars()", "dir()", "compile('1', 'x', 'eval')", "breakpoint()", "input()",
    "torch.load('{mark}')", "torch.save(1, '{mark}')", "torch.cuda.is_available()", "torch.float32.__reduce__()",
    "monai.utils.CommonKeys.__dict__", "numpy.float32.__class__", "@network_def.to('cpu')", "@spatial_size.copy()",
    "len.__self__", "max([1, 2], key=len)", "(y := 1)", "f'{1}'", "'%s' % 1", "'{}'.format(1)", "[*range(3)]",
    "{**{}}", "9 ** 9 ** 9", "2 ** 100000", "10 ** 5000", "'a' * 10 ** 9", "[0] * 10 ** 9",
    "[[0] * 1000] * 1000", "range(10 ** 12)", "list(range(10 ** 9))", "sum([[0]] * 50000, [])",
    "sum([[0]] * 50000)", "b'bytes'", "1j", "import os", "os.system('x')", "os", "torch", "scripts.utils.run()",
    "(" * 500 + "1" + ")" * 500, "-" * 300 + "1", "[" * 200 + "]" * 200, "+".join(["1"] * 3000),
    "monai.bundle.ConfigParser", "torch.device('cpu').__class__", "torch.device(open('{mark}', 'w'))",
    "1 if True else open('{mark}', 'w')", "True or __import__('os')",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_expressions_are_refused_without_running(template, tmp_path):
    mark = tmp_path / "ran"
    reads = []

    def get(key):
        reads.append(key)
        return [96, 96, 64]

    started = time.perf_counter()
    with pytest.raises(BundleNeedsCode) as refusal:
        evaluate("$" + template.replace("{mark}", str(mark)), "net#x", get)
    assert time.perf_counter() - started < 2
    assert not mark.exists()
    assert refusal.value.key == "net#x" and "\n" not in str(refusal.value)
    assert "--trust-code" in str(refusal.value) and "--set 'net#x=VALUE'" in str(refusal.value)
    assert reads == []  # an impure tree: no part of it is evaluated


#: fragments refused wherever they stand, even in a branch never taken (each would run code or reach objects)
FORBIDDEN = st.sampled_from([
    "__import__('os')", "open('{mark}', 'w')", "(lambda: 1)()", "[x for x in [1]]", "(1).__class__",
    "getattr(1, 'x')", "@ref.__class__", "torch.cuda.current_device()", "os.getcwd()", "{1: 2}.keys()",
    "'a'.join([])", "(y := 2)", "f'{1}'", "[*[1]]", "numpy.float32.__doc__", "type(1)",
])
PURE_ATOMS = st.sampled_from(["1", "2.5", "'a'", "@ref", "[1, 2]", "True", "None", "torch.float32", "(1, 'b')"])


def _wrap(inner: st.SearchStrategy) -> st.SearchStrategy:
    """A pure context around ``inner``: the forbidden part may sit in a branch that would never be evaluated."""
    return st.one_of(
        st.tuples(inner, PURE_ATOMS).map(lambda p: f"[{p[0]}, {p[1]}][0]"),
        st.tuples(PURE_ATOMS, inner).map(lambda p: f"{p[0]} if True else {p[1]}"),
        st.tuples(inner, PURE_ATOMS).map(lambda p: f"{p[1]} or {p[0]}"),
        st.tuples(inner, PURE_ATOMS).map(lambda p: f"{{'k': {p[0]}, 'j': {p[1]}}}"),
        inner.map(lambda s: f"len([{s}])"), inner.map(lambda s: f"-({s})"), inner.map(lambda s: f"({s},)"),
        st.tuples(inner, PURE_ATOMS).map(lambda p: f"{p[1]} == {p[0]}"),
        st.tuples(inner, PURE_ATOMS).map(lambda p: f"torch.device({p[0]}) if {p[1]} else 0"),
    )


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(FORBIDDEN, _wrap, max_leaves=6))
def test_fuzz_forbidden_fragments_in_pure_contexts_are_refused_unevaluated(tmp_path, expression):
    mark = tmp_path / "ran"
    reads = []
    with pytest.raises(BundleNeedsCode):
        evaluate("$" + expression.replace("{mark}", str(mark)), "k", lambda key: reads.append(key) or 1)
    assert reads == [] and not mark.exists()  # the whole tree is checked before any part is evaluated


# ---- shared tensors -------------------------------------------------------------------------------------
def test_dynunet_shared_tensors_are_stored_once_and_load_back_identical(tmp_path):
    from monai.networks.nets import DynUNet
    from safetensors import safe_open

    from deepmed.model.weights import load_weights, save_weights

    torch.manual_seed(0)
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "kernel_size": [3, 3, 3],
              "strides": [1, 2, [2, 2, 1]], "upsample_kernel_size": [2, [2, 2, 1]], "filters": [4, 8, 16],
              "norm_name": "instance", "res_block": True}
    network = DynUNet(**kwargs).eval()
    state = network.state_dict()
    assert any(k.startswith("skip_layers.") for k in state) and any(k.startswith("input_block.") for k in state)
    path = save_weights(state, tmp_path / "model.safetensors")
    with safe_open(str(path), framework="pt") as stored:
        names = set(stored.keys())
    distinct = {t.untyped_storage().data_ptr() for t in state.values() if t.numel()}
    assert len(names) < len(state) and len(names) == len(distinct)  # each shared tensor once
    loaded = load_weights(path)
    assert set(loaded) == set(state)
    copy = DynUNet(**kwargs).eval()
    copy.load_state_dict(loaded, strict=True)
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), network(x), rtol=0, atol=0)


def test_aliases_naming_tensors_the_file_lacks_are_refused(tmp_path):
    from safetensors.torch import save_file

    from deepmed.errors import DeepMedError
    from deepmed.model.weights import load_weights

    path = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(2)}, str(path), metadata={"aliases": '{"b": "missing"}'})
    with pytest.raises(DeepMedError, match=naming("model.safetensors", "'aliases'")):
        load_weights(path)
