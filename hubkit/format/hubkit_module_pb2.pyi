from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModuleDef(_message.Message):
    __slots__ = ("format", "required_features", "producer")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    format: int
    required_features: _containers.RepeatedScalarFieldContainer[str]
    producer: str
    def __init__(self, format: _Optional[int] = ..., required_features: _Optional[_Iterable[str]] = ..., producer: _Optional[str] = ...) -> None: ...

class ShapeProto(_message.Message):
    __slots__ = ("unknown_rank", "dims")
    UNKNOWN_RANK_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    unknown_rank: bool
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, unknown_rank: _Optional[bool] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class TensorProto(_message.Message):
    __slots__ = ("dtype", "shape", "content", "string_val")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    STRING_VAL_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: ShapeProto
    content: bytes
    string_val: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Union[ShapeProto, _Mapping]] = ..., content: _Optional[bytes] = ..., string_val: _Optional[_Iterable[str]] = ...) -> None: ...

class AttrValue(_message.Message):
    __slots__ = ("none", "b", "i", "f", "s", "dtype", "tensor", "list", "tuple", "map")
    NONE_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    I_FIELD_NUMBER: _ClassVar[int]
    F_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    TUPLE_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    none: bool
    b: bool
    i: int
    f: float
    s: str
    dtype: str
    tensor: TensorProto
    list: AttrList
    tuple: AttrList
    map: AttrMap
    def __init__(self, none: _Optional[bool] = ..., b: _Optional[bool] = ..., i: _Optional[int] = ..., f: _Optional[float] = ..., s: _Optional[str] = ..., dtype: _Optional[str] = ..., tensor: _Optional[_Union[TensorProto, _Mapping]] = ..., list: _Optional[_Union[AttrList, _Mapping]] = ..., tuple: _Optional[_Union[AttrList, _Mapping]] = ..., map: _Optional[_Union[AttrMap, _Mapping]] = ...) -> None: ...

class AttrList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[AttrValue]
    def __init__(self, items: _Optional[_Iterable[_Union[AttrValue, _Mapping]]] = ...) -> None: ...

class AttrMap(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AttrEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AttrEntry, _Mapping]]] = ...) -> None: ...

class AttrEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: AttrValue
    def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttrValue, _Mapping]] = ...) -> None: ...

class NodeDef(_message.Message):
    __slots__ = ("name", "op", "inputs", "control_inputs", "attrs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_INPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    name: str
    op: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    control_inputs: _containers.RepeatedScalarFieldContainer[str]
    attrs: AttrMap
    def __init__(self, name: _Optional[str] = ..., op: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., control_inputs: _Optional[_Iterable[str]] = ..., attrs: _Optional[_Union[AttrMap, _Mapping]] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("key", "tensor", "dtype", "shape")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    tensor: str
    dtype: str
    shape: ShapeProto
    def __init__(self, key: _Optional[str] = ..., tensor: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Union[ShapeProto, _Mapping]] = ...) -> None: ...

class SignatureDef(_message.Message):
    __slots__ = ("name", "inputs", "outputs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    def __init__(self, name: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ...) -> None: ...

class CollectionItem(_message.Message):
    __slots__ = ("node", "tensor", "variable")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    node: str
    tensor: str
    variable: str
    def __init__(self, node: _Optional[str] = ..., tensor: _Optional[str] = ..., variable: _Optional[str] = ...) -> None: ...

class CollectionDef(_message.Message):
    __slots__ = ("key", "items")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    key: str
    items: _containers.RepeatedCompositeFieldContainer[CollectionItem]
    def __init__(self, key: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CollectionItem, _Mapping]]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("key", "message")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    key: str
    message: _any_pb2.Any
    def __init__(self, key: _Optional[str] = ..., message: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class AssetDef(_message.Message):
    __slots__ = ("node", "filename")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    node: str
    filename: str
    def __init__(self, node: _Optional[str] = ..., filename: _Optional[str] = ...) -> None: ...

class GraphVariant(_message.Message):
    __slots__ = ("tags", "nodes", "signatures", "collections", "attachments", "assets")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeDef]
    signatures: _containers.RepeatedCompositeFieldContainer[SignatureDef]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionDef]
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    assets: _containers.RepeatedCompositeFieldContainer[AssetDef]
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[_Union[NodeDef, _Mapping]]] = ..., signatures: _Optional[_Iterable[_Union[SignatureDef, _Mapping]]] = ..., collections: _Optional[_Iterable[_Union[CollectionDef, _Mapping]]] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ..., assets: _Optional[_Iterable[_Union[AssetDef, _Mapping]]] = ...) -> None: ...

class VariableDef(_message.Message):
    __slots__ = ("name", "dtype", "shape", "trainable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: ShapeProto
    trainable: bool
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Union[ShapeProto, _Mapping]] = ..., trainable: _Optional[bool] = ...) -> None: ...

class ModuleGraph(_message.Message):
    __slots__ = ("variants", "variables", "end")
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[GraphVariant]
    variables: _containers.RepeatedCompositeFieldContainer[VariableDef]
    end: str
    def __init__(self, variants: _Optional[_Iterable[_Union[GraphVariant, _Mapping]]] = ..., variables: _Optional[_Iterable[_Union[VariableDef, _Mapping]]] = ..., end: _Optional[str] = ...) -> None: ...
