"""A NetParameter built layer by layer, as Caffe's NetSpec builds one, without pycaffe.

Layers are named after the blob they write; an in-place layer (ReLU, Dropout, BatchNorm, Scale) writes its
bottom blob again and keeps its own name. Keyword fields that belong to LayerParameter itself (param, include,
loss_weight, transform_param, ...) go on the layer; the others go into the layer type's own parameter message
(`num_output` of a Convolution into convolution_param), as NetSpec routes them.
"""
from __future__ import annotations

from ilgnet.bvlc.proto import NetParameter, descriptor

_LAYER = descriptor("LayerParameter")
_LAYER_FIELDS = set(_LAYER.fields_by_name)
# Layer type (lower case) -> the LayerParameter field of its parameters: innerproduct -> inner_product_param.
_PARAM_FIELDS = {name.removesuffix("_param").replace("_", ""): name
                 for name in _LAYER_FIELDS if name.endswith("_param")}


def _listed(message_descriptor, fields: dict) -> dict:
    """`fields` with a single value given to a repeated field (kernel_size: 3) wrapped in a list, as NetSpec does."""
    repeated = {f.name for f in message_descriptor.fields if f.is_repeated}
    return {k: [v] if k in repeated and not isinstance(v, (list, tuple)) else v for k, v in fields.items()}


class NetBuilder:
    """Collects layers in the order they are added; `net()` returns them as a caffe NetParameter.

    >>> n = NetBuilder()
    >>> x = n.add("Input", "data", [], shape=dict(dim=[1, 3, 8, 8]))
    >>> x = n.add("Convolution", "conv", x, num_output=4, kernel_size=3)     # 1x4x6x6
    >>> n.add("ReLU", "relu", x, in_place=True)                              # writes "conv" again
    'conv'
    """

    def __init__(self):
        self.layers: list = []

    def add(self, layer_type: str, name: str, bottom: str | list[str], *, tops: list[str] | None = None,
            in_place: bool = False, **fields) -> str:
        """Appends a layer reading `bottom` (a blob name or a list of them); returns the name of its (first) top."""
        bottoms = [bottom] if isinstance(bottom, str) else list(bottom)
        tops = tops or ([bottoms[0]] if in_place else [name])
        layer_fields, type_fields = {}, {}
        for key, value in fields.items():
            (layer_fields if key in _LAYER_FIELDS else type_fields)[key] = value
        if type_fields:
            param_field = _PARAM_FIELDS[layer_type.lower()]
            layer_fields[param_field] = _listed(_LAYER.fields_by_name[param_field].message_type, type_fields)
        self.layers.append(dict(name=name, type=layer_type, bottom=bottoms, top=tops, **_listed(_LAYER, layer_fields)))
        return tops[0]

    def net(self, name: str, layers: list[dict] | None = None):
        """A NetParameter named `name` holding `layers` (default: every layer added)."""
        return NetParameter(name=name, layer=self.layers if layers is None else layers)
