"""Image-module helpers: the expected input size and channel count of an image module.

An image module (see docs/common_signatures.md) takes ``float32 [batch, height, width, channels]``
images with values in [0, 1]. Its publisher records the size it was trained for with
:func:`attach_image_module_info` (an ``ImageModuleInfo`` message attached under
``"image_module_info"``); consumers read it with :func:`get_expected_image_size`, which falls back
to the static shape of the signature's image input.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from hubkit.errors import GraphError, SignatureError
from hubkit.graph.shapes import format_shape
from hubkit.module.image_module_info_pb2 import ImageModuleInfo

__all__ = [
    "IMAGE_MODULE_INFO_KEY",
    "ImageModuleInfo",
    "attach_image_module_info",
    "get_expected_image_size",
    "get_num_image_channels",
]

IMAGE_MODULE_INFO_KEY = "image_module_info"
IMAGE_INPUT = "images"
_INT32_LIMIT = 2**31  # the message stores int32 fields


def _positive_int32(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 < int(value) < _INT32_LIMIT:
        raise GraphError(
            f"attach_image_module_info: {what} must be a positive integer below 2**31, got {value!r}."
        )
    return int(value)


def attach_image_module_info(height: int, width: int, num_channels: int = 3) -> None:
    """Inside a ``module_fn``: records the image size (and channels) the module expects.

    Args:
        height: expected image height in pixels.
        width: expected image width in pixels.
        num_channels: color channels of the input (3 for RGB).

    Raises:
        GraphError: an argument that is not a positive integer below 2**31 (bools are refused).
    """
    from hubkit.module.builder import attach_message

    info = ImageModuleInfo(num_channels=_positive_int32(num_channels, "num_channels"))
    info.default_image_size.height = _positive_int32(height, "height")
    info.default_image_size.width = _positive_int32(width, "width")
    attach_message(IMAGE_MODULE_INFO_KEY, info)


def _as_module_or_spec(module_or_spec: Any) -> Any:
    """A module or spec as given, or the spec a handle (path or URL) names."""
    if isinstance(module_or_spec, (str, os.PathLike)):
        from hubkit.module.loader import load_module_spec

        return load_module_spec(module_or_spec)
    if not (hasattr(module_or_spec, "get_input_info_dict") and hasattr(module_or_spec, "get_attached_message")):
        raise SignatureError(
            "Expected a hubkit.Module, a ModuleSpec or a module handle (a path or URL), got "
            f"{type(module_or_spec).__name__}."
        )
    return module_or_spec


def _image_input_shape(module_or_spec: Any, signature: str | None, input_name: str | None) -> tuple | None:
    inputs = module_or_spec.get_input_info_dict(signature)
    if input_name is None:
        if IMAGE_INPUT in inputs:
            input_name = IMAGE_INPUT
        elif len(inputs) == 1:
            input_name = next(iter(inputs))
        else:
            raise SignatureError(
                f"Signature {signature or 'default'!r} has no {IMAGE_INPUT!r} input and several inputs "
                f"{sorted(inputs)}; pass input_name."
            )
    if input_name not in inputs:
        raise SignatureError(
            f"Signature {signature or 'default'!r} has no input {input_name!r}; expected one of {sorted(inputs)}."
        )
    info = inputs[input_name]
    shape = info.get_shape() if hasattr(info, "get_shape") else info.shape
    return None if shape is None else tuple(shape)


def _attached_info(module_or_spec: Any) -> ImageModuleInfo | None:
    return module_or_spec.get_attached_message(IMAGE_MODULE_INFO_KEY, ImageModuleInfo)


def get_expected_image_size(
    module_or_spec: Any, signature: str | None = None, input_name: str | None = None
) -> list[int]:
    """``[height, width]`` of the images ``module_or_spec`` expects.

    Read from the attached ``ImageModuleInfo`` when present, else from the static shape
    ``[batch, height, width, channels]`` of the signature's image input.

    Args:
        module_or_spec: a ``hubkit.Module``, a ``ModuleSpec``, or a module handle (path or URL)
            whose spec is loaded.
        signature: the signature whose input is inspected when nothing is attached (default ``"default"``).
        input_name: the image input (default ``"images"``, or the signature's only input).

    Raises:
        SignatureError: neither a valid attached size nor a static height and width is known, or
            ``module_or_spec`` is none of the accepted types.
    """
    module_or_spec = _as_module_or_spec(module_or_spec)
    info = _attached_info(module_or_spec)
    attached = f"no {IMAGE_MODULE_INFO_KEY!r} message is attached"
    if info is not None and info.HasField("default_image_size"):
        size = info.default_image_size
        if size.height > 0 and size.width > 0:
            return [size.height, size.width]
        attached = f"the attached size [{size.height}, {size.width}] is invalid (not positive)"
    shape = _image_input_shape(module_or_spec, signature, input_name)
    if shape is not None and len(shape) == 4 and shape[1] is not None and shape[2] is not None:
        return [int(shape[1]), int(shape[2])]
    raise SignatureError(
        f"The expected image size is unknown: {attached} and the image input of signature "
        f"{signature or 'default'!r} has shape {format_shape(shape)}, not [batch, height, width, channels]."
    )


def get_num_image_channels(module_or_spec: Any, signature: str | None = None, input_name: str | None = None) -> int:
    """The number of color channels of the images ``module_or_spec`` expects (3 for RGB).

    Read from the static last dimension of the signature's image input, else from the attached
    ``ImageModuleInfo``.

    Raises:
        SignatureError: the channel count is not known, or ``module_or_spec`` is none of the accepted types.
    """
    module_or_spec = _as_module_or_spec(module_or_spec)
    shape = _image_input_shape(module_or_spec, signature, input_name)
    if shape is not None and len(shape) == 4 and shape[3] is not None:
        return int(shape[3])
    info = _attached_info(module_or_spec)
    if info is not None and info.num_channels > 0:
        return int(info.num_channels)
    recorded = f"no {IMAGE_MODULE_INFO_KEY!r} message records it"
    if info is not None and info.num_channels < 0:
        recorded = f"the attached channel count {info.num_channels} is invalid (not positive)"
    raise SignatureError(
        f"The number of image channels is unknown: the image input of signature {signature or 'default'!r} has "
        f"shape {format_shape(shape)} and {recorded}."
    )
