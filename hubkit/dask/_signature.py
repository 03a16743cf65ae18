"""Client side of ``hubkit.dask``: check the handle, read the signature once, plan the job.

Nothing here runs on a worker except the frozen :class:`Job` it produces (a handle and names,
never a ``Module``), which the worker functions receive.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hubkit import FeedError, ResolveError, SignatureError

__all__ = ["Job", "TensorDesc", "check_handle", "plan_job", "read_signature"]

_MAX_MANIFEST_BYTES = 4 << 20


@dataclass(frozen=True)
class TensorDesc:
    """The dtype name and static shape of a signature input or output (``None`` for unknown)."""

    dtype: str
    shape: tuple[int | None, ...] | None

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "string" else np.dtype(self.dtype if self.dtype != "bool" else np.bool_)

    @property
    def row_shape(self) -> tuple[int | None, ...] | None:
        """The shape of one row (the shape without its leading batch dimension)."""
        return None if self.shape is None else self.shape[1:]


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to run one partition: picklable, and never a ``Module``.

    Attributes:
        handle: The module handle each worker resolves (through its own cache) and loads once.
        tags: The graph variant's tags, sorted.
        signature: The signature to run.
        trainable: Passed to ``Module`` (part of the per-process cache key).
        batch_size: Rows per ``Module`` call.
        inputs: Signature input name -> its description.
        outputs: Output key -> its description, in the order the caller asked for them.
    """

    handle: str
    tags: tuple[str, ...]
    signature: str
    trainable: bool
    batch_size: int
    inputs: dict[str, TensorDesc]
    outputs: dict[str, TensorDesc]

    @property
    def cache_key(self) -> tuple[str, tuple[str, ...], str, bool]:
        return (self.handle, self.tags, self.signature, self.trainable)


def check_handle(handle: Any) -> str:
    """The handle as the workers will see it: a string, with a relative local path made absolute.

    Raises:
        ResolveError: ``handle`` is a loaded ``Module``/``ModuleSpec`` (never shipped to workers) or not a handle.
    """
    import hubkit

    if isinstance(handle, (hubkit.Module, hubkit.ModuleSpec)):
        kind = type(handle).__name__
        spec = handle.spec if isinstance(handle, hubkit.Module) else handle
        where = getattr(spec, "module_dir", None)
        hint = f" (this one was loaded from {where!r})" if where else ""
        raise ResolveError(
            f"hubkit.dask needs a module handle (a path or URL string), not a {kind} object: a {kind} is never "
            f"pickled to the workers, each worker loads the handle once. Pass the handle it came from{hint}."
        )
    if not isinstance(handle, (str, os.PathLike)):
        raise ResolveError(f"A module handle must be a string or path, got {type(handle).__name__}: {handle!r}.")
    text = os.fspath(handle)
    if not isinstance(text, str) or not text.strip():
        raise ResolveError(f"A module handle must be a non-empty path or URL, got {text!r}.")
    if "://" not in text:  # a local path: the workers may run in another working directory
        text = os.path.abspath(os.path.expanduser(text))
    return text


def _desc(dtype: Any, shape: Any) -> TensorDesc:
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", str(dtype))
    return TensorDesc(name, None if shape is None else tuple(None if d is None else int(d) for d in shape))


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if 0 < value < float("inf") else default


def _manifest_signatures(handle: str, tags: tuple[str, ...]) -> dict[str, Any] | None:
    """``{signature: {"inputs": ..., "outputs": ...}}`` of a registry handle's manifest, or None.

    A registry publishes ``<handle>.json`` describing every signature, so the client checks the call
    without downloading the archive. This is only a shortcut: any problem (offline, not a registry URL,
    an unreadable or unexpected document) returns None, and the caller loads the spec through the
    resolvers, which apply every hub setting and report any failure.

    Raises:
        SignatureError: The manifest lists no graph variant with these tags.
    """
    lowered = handle.lower()
    if not lowered.startswith(("http://", "https://")) or lowered.partition("#")[0].endswith((".tar.gz", ".tgz")):
        return None
    if os.environ.get("HUBKIT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off"):
        return None
    try:
        import requests

        timeout = (_env_seconds("HUBKIT_CONNECT_TIMEOUT", 10.0), _env_seconds("HUBKIT_READ_TIMEOUT", 60.0))
        with requests.get(handle.rstrip("/") + ".json", timeout=timeout, stream=True) as response:
            if response.status_code != 200:
                return None
            body = response.raw.read(_MAX_MANIFEST_BYTES + 1, decode_content=True)
        if len(body) > _MAX_MANIFEST_BYTES:
            return None
        manifest = json.loads(body.decode("utf-8"))
        variants = {tuple(sorted(v["tags"])): v["signatures"] for v in manifest["variants"]}
    except Exception:  # the manifest is only a shortcut: any failure defers to the resolvers, which report it
        return None
    if tags not in variants:
        raise SignatureError(
            f"Module {handle!r} has no graph variant for the tags {list(tags)}; available tag sets: "
            f"{sorted(list(t) for t in variants)}."
        )
    signatures = variants[tags]
    return signatures if isinstance(signatures, dict) else None


def read_signature(handle: str, tags: tuple[str, ...], signature: str) -> tuple[dict[str, TensorDesc], dict[str, TensorDesc]]:
    """(inputs, outputs) of ``signature``, from the registry manifest or else the module spec.

    Raises:
        SignatureError: The module has no such signature (the message lists the available ones) or no such tags.
        ResolveError: The handle cannot be resolved from the client (e.g. the registry is unreachable).
    """
    signatures = _manifest_signatures(handle, tags)
    if signatures is not None:
        if signature not in signatures:
            raise SignatureError(
                f"Module {handle!r} has no signature {signature!r}; available signatures: {sorted(signatures)}."
            )
        try:
            parts = [
                {k: _desc(v["dtype"], v["shape"]) for k, v in signatures[signature][part].items()}
                for part in ("inputs", "outputs")
            ]
            return parts[0], parts[1]
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # a manifest from another tool: ask the spec
    import hubkit

    spec = hubkit.load_module_spec(handle)
    tag_set = set(tags)
    names = spec.get_signature_names(tags=tag_set)
    if signature not in names:
        raise SignatureError(f"Module {handle!r} has no signature {signature!r}; available signatures: {sorted(names)}.")
    ins = {k: _desc(v.dtype, v.get_shape()) for k, v in spec.get_input_info_dict(signature, tags=tag_set).items()}
    outs = {k: _desc(v.dtype, v.get_shape()) for k, v in spec.get_output_info_dict(signature, tags=tag_set).items()}
    return ins, outs


def _normalize_tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    try:
        items = list(tags)
    except TypeError:
        raise SignatureError(f"tags must be a set of strings, got {type(tags).__name__}: {tags!r}.") from None
    if not all(isinstance(t, str) for t in items):
        raise SignatureError(f"tags must be a set of strings, got {tags!r}.")
    return tuple(sorted(set(items)))


def _output_keys(output_key: str | Sequence[str] | None, outputs: dict[str, TensorDesc], signature: str) -> list[str]:
    if output_key is None:
        keys = ["default"]
    elif isinstance(output_key, str):
        keys = [output_key]
    elif isinstance(output_key, Sequence) and output_key and all(isinstance(k, str) for k in output_key):
        keys = list(dict.fromkeys(output_key))
    else:
        raise SignatureError(f"output_key must be an output name or a non-empty list of them, got {output_key!r}.")
    for key in keys:
        if key not in outputs:
            hint = "; pass output_key" if output_key is None else ""
            raise SignatureError(
                f"Signature {signature!r} has no output {key!r}{hint}; available outputs: {sorted(outputs)}."
            )
        desc = outputs[key]
        if desc.shape is not None and len(desc.shape) == 0:
            raise SignatureError(
                f"Signature {signature!r} output {key!r} is a scalar (shape []), not one value per row, so it cannot be "
                f"mapped over partitions; per-row outputs: {sorted(k for k, d in outputs.items() if d.shape != ())}."
            )
    return keys


def plan_job(
    handle: Any,
    signature: str,
    output_key: str | Sequence[str] | None,
    batch_size: int,
    tags: Any,
    trainable: bool,
) -> Job:
    """Checks the call on the client (once) and returns the :class:`Job` the workers run.

    Raises:
        ResolveError: Not a handle, or it cannot be resolved.
        SignatureError: Unknown signature or output, a scalar output, or a bad ``batch_size`` or ``tags``.
    """
    text = check_handle(handle)
    if not isinstance(signature, str) or not signature:
        raise SignatureError(f"signature must be a non-empty string, got {signature!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise SignatureError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not isinstance(trainable, bool):
        raise SignatureError(f"trainable must be True or False, got {trainable!r}.")
    tag_tuple = _normalize_tags(tags)
    inputs, outputs = read_signature(text, tag_tuple, signature)
    keys = _output_keys(output_key, outputs, signature)
    for name, desc in inputs.items():
        if desc.shape is not None and len(desc.shape) == 0:
            raise SignatureError(
                f"Signature {signature!r} input {name!r} is a scalar (shape []), not one value per row, so it cannot "
                "be fed from a partition."
            )
    return Job(text, tag_tuple, signature, trainable, int(batch_size), inputs, {k: outputs[k] for k in keys})


def input_sources(job: Job, inputs: str | Mapping[str, str] | None, available: Sequence[str] | None, what: str) -> dict[str, Any]:
    """Signature input name -> column or record key feeding it.

    Args:
        job: The planned job.
        inputs: The caller's ``inputs`` argument.
        available: The columns of a dataframe (checked), or None for bag records (checked per record).
        what: "column" or "record key", for messages.

    Raises:
        FeedError: An input has no source, or a source does not exist.
    """
    names = list(job.inputs)
    if inputs is None:
        mapping = {n: n for n in names}
    elif isinstance(inputs, str):
        if len(names) != 1:
            raise FeedError(
                f"Signature {job.signature!r} has several inputs {sorted(names)}; pass inputs as a dict "
                f"{{input name: {what}}}."
            )
        mapping = {names[0]: inputs}
    elif isinstance(inputs, Mapping):
        mapping = dict(inputs)
        missing = sorted(set(names) - set(mapping))
        extra = sorted(str(k) for k in set(mapping) - set(names))
        if missing or extra:
            parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
            raise FeedError(
                f"inputs does not match signature {job.signature!r} ({'; '.join(parts)}); expected {sorted(names)}."
            )
    else:
        raise FeedError(f"inputs must be a {what}, a dict {{input name: {what}}} or None, got {inputs!r}.")
    if available is not None:
        unknown = sorted(str(v) for v in mapping.values() if v not in available)
        if unknown:
            raise FeedError(
                f"The {what}s {unknown} feeding signature {job.signature!r} do not exist; available {what}s: "
                f"{sorted(map(str, available))}."
            )
    return {n: mapping[n] for n in names}
