"""Fine-tuning recipes: which pretrained layers a training net fixes (lr_mult 0) and which it fine-tunes.

The paper and the authors' release disagree on how ILGNet is fine-tuned from ImageNet:
  released    the authors' train.prototxt: every layer trains, the new layers ten times faster (lr_mult 10/20).
  paper       the paper, Sec. 1: "the inception modules are fixed and the connected local and global features layers
              are fine tuned" (and its title, "fine-tuning connected layer"): every pretrained layer of the trunk (the
              stem and every inception module) is fixed; the head trains.
  paper-sec5  the paper, Sec. 5: "The bottom features are shared for this two tasks. The high level features together
              with 2 inception modules are fine tuned ... We fixed the shared inception layers": the pretrained
              trunk is fixed up to the last two inception modules, which train with the head.

Layers that start from their fillers (the new head, the no-inception net's plain convolutions, BatchNorm's Scale
layers when the pretrained model has no batch normalization) always train: a fixed random layer would learn nothing.
The head is every layer named temp*, loss* or pool5* (ILGNet's local/global layers, GoogLeNet's classifier
branches, including their pretrained loss1/conv and loss1/fc). docs/NETS.md lists the fixed layers per net.
"""
from __future__ import annotations

import re

from ilgnet.errors import lookup

RECIPES = {
    "released": "the authors' train.prototxt: every layer trains, new layers at 10x",
    "paper": "the paper, Sec. 1: the stem and every inception module fixed, the connected layers fine-tuned",
    "paper-sec5": "the paper, Sec. 5: the trunk fixed up to its last two inception modules, which train with the head",
}
DEFAULT = "released"

HEAD = re.compile(r"^(temp|loss|pool5)")
MODULE = re.compile(r"^(inception_(?:\d[a-z]|[ab]\d+)|reduction_a)(?=[/_]|$)")
INCEPTION = re.compile(r"^inception_(?:\d[a-z]|[ab]\d+)$")


def check_recipe(recipe: str) -> str:
    """`recipe` when it is one of RECIPES; UnknownName otherwise."""
    lookup(RECIPES, recipe, "recipe", about="recipe")
    return recipe


def _block(name: str) -> str | None:
    """The trunk block a layer belongs to (`inception_3a`, `reduction_a`, ...), "stem", or None for the head."""
    if HEAD.match(name):
        return None
    module = MODULE.match(name)
    return module[1] if module else "stem"


def fixed_layers(net, fresh: set[str], recipe: str) -> list[str]:
    """The layers of a NetParameter `net` that `recipe` fixes, in net order: trunk layers with parameters that are
    not in `fresh` (the layers starting from their fillers), before the recipe's first fine-tuned block (with
    `paper-sec5`, the second-to-last pretrained inception module; a net with fewer keeps its whole trunk fixed)."""
    check_recipe(recipe)
    if recipe == "released":
        return []
    trunk = [(layer.name, _block(layer.name)) for layer in net.layer
             if layer.param and layer.name not in fresh and _block(layer.name) is not None]
    blocks = list(dict.fromkeys(block for _, block in trunk))
    stop = len(blocks)
    if recipe == "paper-sec5":
        modules = [i for i, block in enumerate(blocks) if INCEPTION.match(block)]
        stop = modules[-2] if len(modules) >= 2 else stop      # no two pretrained modules: the trunk stays fixed
    fixed_blocks = set(blocks[:stop])
    return [name for name, block in trunk if block in fixed_blocks]


def apply_recipe(net, fresh: set[str], recipe: str) -> list[str]:
    """Sets lr_mult and decay_mult to 0 on every parameter of the layers `recipe` fixes (fixed_layers), in place;
    returns their names."""
    fixed = fixed_layers(net, fresh, recipe)
    names = set(fixed)
    for layer in net.layer:
        if layer.name in names:
            for param in layer.param:
                param.lr_mult, param.decay_mult = 0, 0
    return fixed
