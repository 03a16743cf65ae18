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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a", 5), "height must be a positive integer below 2\\*\\*31, got 'a'"),
        ((2**40, 5), "height must be a positive integer below 2\\*\\*31, got 1099511627776"),
        ((2**31, 5), "height .* got 2147483648"),
        ((-1, 5), "height .* got -1"),
        ((0, 5), "height .* got 0"),
        ((5, 2.5), "width .* got 2.5"),
        ((True, 5), "height .* got True"),
        ((5, 5, 0), "num_channels .* got 0"),
        ((5, 5, -3), "num_channels .* got -3"),
    ],
)
def test_attach_refuses_sizes_that_are_not_positive_int32(args, message):
    with pytest.raises(hk.GraphError, match=f"attach_image_module_info: {message}"):
        spec_with([None, None, None, 3], attach=lambda: attach_image_module_info(*args))


def test_attach_accepts_numpy_integers():
    import numpy as np

    spec = spec_with([None, None, None, 3], attach=lambda: attach_image_module_info(np.int64(7), np.int32(9)))
    assert get_expected_image_size(spec) == [7, 9]


def test_an_invalid_stored_size_is_reported_as_invalid():
    from hubkit.module.builder import attach_message

    def attach_bad():
        info = ImageModuleInfo(num_channels=-2)
        info.default_image_size.height = -1
        info.default_image_size.width = 5
        attach_message("image_module_info", info)

    spec = spec_with([None, None, None, None], attach=attach_bad)
    with pytest.raises(hk.SignatureError, match=r"the attached size \[-1, 5\] is invalid .* has shape \[.*\]"):
        get_expected_image_size(spec)
    with pytest.raises(hk.SignatureError, match="the attached channel count -2 is invalid"):
        get_num_image_channels(spec)
    # With a static size in the input, that size is still used.
    assert get_expected_image_size(spec_with([None, 6, 7, 3], attach=attach_bad)) == [6, 7]


def test_a_handle_is_loaded_and_other_types_are_refused(tmp_path):
    spec = spec_with([None, None, None, 3], attach=lambda: attach_image_module_info(12, 16))
    path = tmp_path / "m"
    hk.Module(spec).export(str(path))
    assert get_expected_image_size(str(path)) == [12, 16]
    assert get_expected_image_size(path) == [12, 16]
    assert get_num_image_channels(str(path)) == 3
    for bad in (42, None, ["m"]):
        with pytest.raises(hk.SignatureError, match=f"a module handle \\(a path or URL\\), got {type(bad).__name__}"):
            get_expected_image_size(bad)
        with pytest.raises(hk.SignatureError, match=f"got {type(bad).__name__}"):
            get_num_image_channels(bad)
