"""The ONNX export kept for the onnxruntime backend: made once per caffemodel, net and toolkit version, beside the
caffemodel (or under the cache folder), one process at a time (a second waits and uses the first's file), and
announced when it is made (`cached_export`). ilgnet.zoo.onnx_export makes the graph."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import ilgnet
from ilgnet import defaults
from ilgnet.errors import BadInput
from ilgnet.fileio import file_digest, size_text, waiting_lock
from ilgnet.nets import VARIANTS
from ilgnet.zoo.onnx_export import net_to_onnx, save
from ilgnet.zoo.onnx_metadata import FORMAT, identity, read_metadata


def _cache_key(path: Path) -> str | None:
    """The cache_key in the metadata of a kept export; None for a file without one or not readable as ONNX."""
    try:
        return read_metadata(path).get("cache_key")
    except BadInput:
        return None


def cached_export(net, caffemodel: Path, *, variant: str, output: str | None = None,
                  cache: Path = defaults.CACHE_DIR) -> Path:
    """The fp32 ONNX file of `net` (a NetParameter or a deploy prototxt) with the weights of `caffemodel` (checked
    to fit by the caller), exported once and kept beside the caffemodel as NAME.KEY.onnx, or under `cache`/onnx
    where that folder cannot be written. KEY hashes the caffemodel's sha256, the variant, the net, the output and
    the toolkit's and converter's versions, so a changed file or toolkit exports anew; a kept file whose metadata
    do not carry that key (cut short, or another file under its name) is exported again. The file carries no mean:
    the caller subtracts it. An export made now is announced first with a warning naming the file and its size
    (ILGNet's is some 600 MB); ilgnet.cli prints it as `ilgnet COMMAND: warning: ...`."""
    caffemodel = Path(caffemodel)
    digest = file_digest(caffemodel)
    text = Path(net).read_bytes() if isinstance(net, (str, Path)) else net.SerializeToString()
    parts = [digest, variant, hashlib.sha256(text).hexdigest(), output or "", ilgnet.__version__, FORMAT]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    name = f"{caffemodel.stem}.{key}.onnx"
    places = [caffemodel.parent / name, Path(cache) / "onnx" / name]
    for path in places:
        if path.is_file() and _cache_key(path) == key:
            return path
    for path in places:
        # One export at a time per file: a second process waits for the first and uses its file.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with waiting_lock(path.with_name(f".{path.name}.lock")):
                if path.is_file() and _cache_key(path) == key:
                    return path
                warnings.warn(f"exporting {caffemodel.name} to ONNX for onnxruntime, once: {path} (about "
                              f"{size_text(caffemodel.stat().st_size)}, as large as the caffemodel; kept for later "
                              f"runs, and safe to delete)", stacklevel=2)
                return save(_export(net, caffemodel, variant, output, digest, key), path)
        except OSError:
            continue
    raise BadInput(f"cannot write the ONNX export of {caffemodel} beside it nor under {cache}")


def _export(net, caffemodel: Path, variant: str, output: str | None, digest: str, key: str):
    """cached_export's ModelProto, its metadata carrying the key."""
    known = VARIANTS.get(variant, variant)
    return net_to_onnx(net, caffemodel, output=output,
                       metadata={**identity(known, caffemodel, caffemodel_sha256=digest), "cache_key": key})
