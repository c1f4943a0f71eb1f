"""The engines that run a deploy net for the Scorer: pycaffe (`caffe`), or OpenCV's dnn module (`opencv`), which
reads Caffe's prototxt and caffemodel itself and needs no Caffe build.

Both take the same net (a deploy prototxt file, or a NetParameter such as ilgnet.nets.deploy() generates), the same
caffemodel and the same preprocessed input, (N, 3, crop, crop) float32, and give the probabilities of the net's
softmax blob, (N, classes). Everything around the forward pass (decoding, resizing, cropping, the mean, batching, the
weight check) is the Scorer's, so it is one code path whichever engine runs. tests/test_backends.py checks that
the two agree to 1e-5 on every variant.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ilgnet.caffe_io import load_net, read_prototxt
from ilgnet.caffe_proto import to_text
from ilgnet.caffe_tools import import_caffe, require_gpus
from ilgnet.defaults import BACKENDS
from ilgnet.errors import BadInput, lookup
from ilgnet.shapes import net_input, net_outputs


@contextmanager
def _prototxt_file(net):
    """A path to the net's prototxt: the file itself, or a NetParameter written to a temporary file."""
    if isinstance(net, (str, Path)):
        yield Path(net)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as handle:
        handle.write(to_text(net))
        handle.flush()
        yield Path(handle.name)


class NetBackend:
    """A deploy net with its weights in one engine. `net` is a deploy prototxt path or a NetParameter; `output` the
    softmax blob, or None for the net's one output. Attributes: input_blob and input_shape (N, 3, crop, crop) of its
    input, output. BadInput for a net without an input, or whose outputs do not say which blob is the softmax."""

    name = ""

    def __init__(self, net, weights: Path, *, output: str | None = None, gpu: int | None = None):
        self.source = str(net) if isinstance(net, (str, Path)) else f"the {net.name} deploy net"
        topology = read_prototxt(net) if isinstance(net, (str, Path)) else net
        self.input_blob, self.input_shape = net_input(topology)
        outputs = net_outputs(topology)
        if output is None and len(outputs) != 1:
            raise BadInput(f"{self.source}: expected one output (the softmax), found {', '.join(outputs) or 'none'}")
        self.output = output or next(iter(outputs))
        if self.output not in outputs:
            raise BadInput(f"{self.source}: {self.output!r} is not an output of the net ({', '.join(outputs)})")
        self.output_layer = outputs[self.output]
        with _prototxt_file(net) as prototxt:
            self._load(prototxt, Path(weights), gpu)

    def _load(self, prototxt: Path, weights: Path, gpu: int | None) -> None:
        raise NotImplementedError

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for inputs (N, 3, crop, crop) float32."""
        raise NotImplementedError


class CaffeNet(NetBackend):
    """The net in pycaffe, on the CPU or GPU `gpu` (`caffe_net` is the caffe.Net). CaffeNotFoundError without pycaffe,
    BadInput for a GPU this Caffe cannot use."""

    name = "caffe"

    def _load(self, prototxt: Path, weights: Path, gpu: int | None) -> None:
        if gpu is not None:
            require_gpus(gpu)
        caffe = import_caffe()
        if gpu is None:
            caffe.set_mode_cpu()
        else:
            caffe.set_device(gpu)
            caffe.set_mode_gpu()
        self.caffe_net = load_net(prototxt, weights=weights)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        blob = self.caffe_net.blobs[self.input_blob]
        if blob.data.shape[0] != len(batch):
            blob.reshape(len(batch), *blob.data.shape[1:])
            self.caffe_net.reshape()
        blob.data[...] = batch
        self.caffe_net.forward()
        return self.caffe_net.blobs[self.output].data.reshape(len(batch), -1).copy()


class OpenCVNet(NetBackend):
    """The net in OpenCV's dnn module (cv2.dnn.readNetFromCaffe), on the CPU with OpenCV's thread pool
    (cv2.setNumThreads). A forward pass of one zero input at load time makes OpenCV create every layer, so a layer
    type it lacks is a BadInput naming the layer before any photo is scored; BadInput too for a GPU."""

    name = "opencv"

    def _load(self, prototxt: Path, weights: Path, gpu: int | None) -> None:
        import cv2

        if gpu is not None:
            raise BadInput(f"GPU {gpu} asked for, but the opencv backend runs on the CPU; the caffe backend runs on "
                           f"GPUs")
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)     # its errors are raised, not logged
        self._error = cv2.error
        try:
            self.dnn = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
        except cv2.error as err:
            raise BadInput(f"{self.source} with {weights}: OpenCV cannot read them: {err.err.strip()}") from None
        self._run(np.zeros((1, *self.input_shape[1:]), np.float32), "cannot run this net")

    def _run(self, batch: np.ndarray, failure: str) -> np.ndarray:
        try:
            self.dnn.setInput(batch, self.input_blob)
            return self.dnn.forward(self.output_layer)
        except self._error as err:
            raise BadInput(f"{self.source}: OpenCV's dnn module {failure}: {err.err.strip()}; the caffe backend "
                           f"runs every layer Caffe has") from None

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(batch, np.float32), "failed").reshape(len(batch), -1).copy()


def open_net(backend: str, net, weights: Path, *, output: str | None = None, gpu: int | None = None) -> NetBackend:
    """The net (a deploy prototxt path or a NetParameter) with `weights` loaded in `backend` (one of BACKENDS), ready
    to forward inputs of any batch size. UnknownName for another backend; CaffeNotFoundError (caffe without
    pycaffe) and BadInput as the backends raise them."""
    kind = lookup(dict(zip(BACKENDS, (CaffeNet, OpenCVNet))), backend, "scoring backend")
    return kind(net, weights, output=output, gpu=gpu)
