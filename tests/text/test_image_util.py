"""get_expected_image_size / get_num_image_channels: attached message first, else the input's static shape."""

from __future__ import annotations

import pytest

import hubkit as hk
from hubkit.module.image_util import (
    ImageModuleInfo,
    attach_image_module_info,
    get_expected_image_size,
    get_num_image_channels,
)


def spec_with(shape, attach=None, inputs=("images",)):
    def module_fn():
        placeholders = {name: hk.placeholder(hk.float32, shape, name=name) for name in inputs}
        first = next(iter(placeholders.values()))
        hk.add_signature("default", placeholders, {"default": hk.reduce_mean(first, axis=[1, 2])})
        if attach is not None:
            attach()

    return hk.create_module_spec(module_fn)


def test_attached_size_wins_over_the_input_shape():
    spec = spec_with([None, None, None, 3], attach=lambda: attach_image_module_info(224, 192))
    assert get_expected_image_size(spec) == [224, 192]
    assert get_expected_image_size(hk.Module(spec)) == [224, 192]
    assert get_num_image_channels(spec) == 3
    info = spec.get_attached_message("image_module_info", ImageModuleInfo)
    assert info.default_image_size.height == 224 and info.num_channels == 3


def test_static_input_shape_is_the_fallback():
    spec = spec_with([None, 28, 30, 1])
    assert get_expected_image_size(spec) == [28, 30]
    assert get_num_image_channels(spec) == 1


def test_channels_from_the_message_when_the_shape_does_not_say():
    spec = spec_with([None, None, None, None], attach=lambda: attach_image_module_info(8, 8, num_channels=4))
    assert get_num_image_channels(spec) == 4


def test_unknown_size_and_channels_are_errors():
    spec = spec_with([None, None, None, None])
    with pytest.raises(hk.SignatureError, match="expected image size is unknown"):
        get_expected_image_size(spec)
    with pytest.raises(hk.SignatureError, match="number of image channels is unknown"):
        get_num_image_channels(spec)


def test_several_inputs_need_a_name():
    spec = spec_with([None, 4, 4, 3], inputs=("left", "right"))
    with pytest.raises(hk.SignatureError, match=r"several inputs \['left', 'right'\]; pass input_name"):
        get_expected_image_size(spec)
    assert get_expected_image_size(spec, input_name="right") == [4, 4]
    with pytest.raises(hk.SignatureError, match=r"no input 'middle'; expected one of \['left', 'right'\]"):
        get_expected_image_size(spec, input_name="middle")


def test_top_level_names_are_the_image_util_functions():
    assert hk.get_expected_image_size is get_expected_image_size
    assert hk.get_num_image_channels is get_num_image_channels
