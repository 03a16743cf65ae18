from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageModuleInfo(_message.Message):
    __slots__ = ("default_image_size", "num_channels")
    class ImageSize(_message.Message):
        __slots__ = ("height", "width")
        HEIGHT_FIELD_NUMBER: _ClassVar[int]
        WIDTH_FIELD_NUMBER: _ClassVar[int]
        height: int
        width: int
        def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...
    DEFAULT_IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    default_image_size: ImageModuleInfo.ImageSize
    num_channels: int
    def __init__(self, default_image_size: _Optional[_Union[ImageModuleInfo.ImageSize, _Mapping]] = ..., num_channels: _Optional[int] = ...) -> None: ...
