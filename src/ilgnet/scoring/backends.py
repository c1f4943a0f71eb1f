"""The engines that run a deploy net for the Scorer: pycaffe (`caffe`); onnxruntime (`onnxruntime`), which runs the
net exported to ONNX (ilgnet.zoo.onnx_export: a file `ilgnet export` wrote, or an export made on the fly and kept
beside the caffemodel); or OpenCV's dnn module (`opencv`), which reads Caffe's prototxt and caffemodel itself. The
last two need no Caffe build; `auto` picks the first of the three this machine has (pick_backend).

All take the same net (a deploy prototxt file, or a NetParameter such as ilgnet.nets.deploy() generates), the same
weights and the same preprocessed input, (N, 3, crop, crop) float32, and give the probabilities of the net's
softmax blob, (N, classes). Everything around the forward pass (decoding, resizing, cropping, the mean, batching, the
weight check) is the Scorer's, so it is one code path whichever engine runs. tests/test_backends.py checks that
they agree to 1e-5 on every variant.

OpenCV's InnerProduct reads its whole weight matrix once per input row, and ILGNet's head holds 600 MB of them;
Caffe's reads them once per batch (one GEMM). So for a generated net OpenCV gets each InnerProduct as a 1x1
convolution over the batch laid out along the height (`_batched_inner_products`): the same products and sums,
9 to 21 % faster per batch of 16 on the `ilgnet` net in four measurements on a busy 2-core machine.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ilgnet.bvlc.io import load_net, read_prototxt
from ilgnet.bvlc.proto import BlobShape, LayerParameter, NetParameter, to_text
from ilgnet.bvlc.shapes import net_input, net_outputs
from ilgnet.bvlc.tools import import_caffe, require_gpus
from ilgnet.errors import BadInput, CaffeNotFoundError, MissingPackage, about, lookup
from ilgnet.pools import cpu_count
from ilgnet.zoo.onnx_cache import cached_export
from ilgnet.zoo.onnx_export import ONNX_INSTALL
from ilgnet.zoo.onnx_metadata import is_onnx


class NetBackend:
    """A deploy net with its weights in one engine. `net` is a deploy prototxt path or a NetParameter; `output` the
    softmax blob, or None for the net's one output; `variant` the net variant it is (default: the net's name).
    Attributes: input_blob and input_shape (N, 3, crop, crop) of its input, output. BadInput for a net without an
    input, or whose outputs do not say which blob is the softmax."""

    name = ""

    def __init__(self, net, weights: Path, *, output: str | None = None, gpu: int | None = None, variant: str = ""):
        self.variant = variant or getattr(net, "name", "") or Path(net).stem
        self.source = str(net) if isinstance(net, (str, Path)) else f"the {net.name} deploy net"
        with about(self.source):
            topology = read_prototxt(net) if isinstance(net, (str, Path)) else net
            self.input_blob, self.input_shape = net_input(topology)
            outputs = net_outputs(topology)
        if output is None and len(outputs) != 1:
            raise BadInput(f"{self.source}: expected one output (the softmax), found {', '.join(outputs) or 'none'}")
        self.output = output or next(iter(outputs))
        if self.output not in outputs:
            raise BadInput(f"{self.source}: {self.output!r} is not an output of the net ({', '.join(outputs)})")
        self.output_layer = outputs[self.output]
        self._load(net, Path(weights), gpu)

    def _load(self, net, weights: Path, gpu: int | None) -> None:
        raise NotImplementedError

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for inputs (N, 3, crop, crop) float32."""
        raise NotImplementedError


class CaffeNet(NetBackend):
    """The net in pycaffe, on the CPU or GPU `gpu` (`caffe_net` is the caffe.Net). CaffeNotFoundError without pycaffe,
    BadInput for a GPU this Caffe cannot use."""

    name = "caffe"

    def _load(self, net, weights: Path, gpu: int | None) -> None:
        if gpu is not None:
            require_gpus(gpu)
        caffe = import_caffe()
        if gpu is None:
            caffe.set_mode_cpu()
        else:
            caffe.set_device(gpu)
            caffe.set_mode_gpu()
        self.caffe_net = load_net(net, weights=weights)

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

    def _load(self, net, weights: Path, gpu: int | None) -> None:
        import cv2

        if gpu is not None:
            raise BadInput(f"GPU {gpu} asked for, but the opencv backend runs on the CPU; the caffe backend runs on "
                           f"GPUs")
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)     # its errors are raised, not logged
        self._error = cv2.error
        try:
            if isinstance(net, (str, Path)):
                self.dnn = cv2.dnn.readNetFromCaffe(str(net), str(weights))
            else:
                prototxt, model = _batched_inner_products(net, weights)
                self.dnn = cv2.dnn.readNetFromCaffe(np.frombuffer(prototxt, np.uint8), np.frombuffer(model, np.uint8))
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


class OnnxRuntimeNet(NetBackend):
    """The net exported to ONNX, in onnxruntime: `weights` is an ONNX file `ilgnet export` wrote, or a caffemodel,
    then exported once and kept beside it (ilgnet.zoo.onnx_cache.cached_export; `onnx_file` is the file run). On the
    CPU with OMP_NUM_THREADS threads when set (ilgnet.scoring.pool sets it to each process's share), else one per
    CPU this process may use (ilgnet.pools.cpu_count: taskset and the cgroup's quota, where onnxruntime would count
    the machine's cores), every graph optimisation on (the fusion of an int8 file's QDQ pairs into integer
    kernels among them); on GPU `gpu` with onnxruntime's CUDA provider (the onnxruntime-gpu
    package). MissingPackage without onnxruntime; BadInput for a GPU it cannot use."""

    name = "onnxruntime"

    def _load(self, net, weights: Path, gpu: int | None) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise MissingPackage(f"the onnxruntime backend needs onnxruntime ({err}): {ONNX_INSTALL}") from None
        providers = ["CPUExecutionProvider"]
        if gpu is not None:
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise BadInput(f"GPU {gpu} asked for, but this onnxruntime has no CUDA provider (it has "
                               f"{', '.join(onnxruntime.get_available_providers())}); onnxruntime-gpu brings it")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": gpu}))
        self.onnx_file = weights if is_onnx(weights) else cached_export(net, weights, variant=self.variant,
                                                                         output=self.output)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3                  # its warnings are about its own graph optimisations
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL    # QDQ fusions too
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or cpu_count()
        try:
            self.session = onnxruntime.InferenceSession(str(self.onnx_file), options, providers=providers)
        except Exception as err:                        # onnxruntime's own error types, per build
            first = str(err).strip().splitlines()[0]
            raise BadInput(f"{self.onnx_file}: onnxruntime cannot load it: {first}") from None
        if gpu is not None and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise BadInput(f"GPU {gpu} asked for, but onnxruntime's CUDA provider could not start there (the CUDA "
                           f"and cuDNN libraries it needs missing?)")
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return outputs[0].reshape(len(batch), -1)


BATCHED = "/batched"     # suffix of the 1x1 convolution that computes an InnerProduct for OpenCV


def _batched_inner_products(net, weights: Path) -> tuple[bytes, bytes]:
    """The prototxt and caffemodel of `net` (a NetParameter) for OpenCV, each InnerProduct layer on axis 1 (M outputs
    from K inputs) replaced by: Reshape to (N, K, 1, 1), Permute to (1, K, N, 1), a 1x1 Convolution NAME/batched with
    the layer's weights as (M, K, 1, 1) and its bias, Permute to (N, M, 1, 1), and Reshape NAME to (N, M), so the
    layer's output keeps its name. Reshape and Permute (OpenCV's, from Caffe's SSD fork) are not in ilgnet's schema
    and are written as text."""
    folded = {layer.name for layer in net.layer
              if layer.type == "InnerProduct" and layer.inner_product_param.axis == 1
              and not layer.inner_product_param.transpose}
    texts = [f'name: "{net.name}"']
    for layer in net.layer:
        if layer.name not in folded:
            texts.append(f"layer {{\n{to_text(layer)}}}")
            continue
        n, p = layer.name, layer.inner_product_param
        conv = LayerParameter(name=n + BATCHED, type="Convolution", bottom=[n + "/columns"], top=[n + BATCHED],
                              convolution_param={"num_output": p.num_output, "kernel_size": [1],
                                                 "bias_term": p.bias_term})
        texts += [_reshape(n + "/rows", layer.bottom[0], "0 -1 1 1"), _permute(n + "/columns", n + "/rows"),
                  f"layer {{\n{to_text(conv)}}}", _permute(n + "/back", n + BATCHED), _reshape(n, n + "/back", "0 -1",
                                                                                            top=layer.top[0])]
    model = NetParameter.FromString(Path(weights).read_bytes())
    for layer in [*model.layer, *model.layers]:
        if layer.name in folded:
            layer.name += BATCHED
            blob = layer.blobs[0]
            dims = blob.shape.dim if blob.HasField("shape") else (blob.num, blob.channels, blob.height, blob.width)
            outputs, inputs = dims[-2:]
            for field in ("num", "channels", "height", "width"):
                blob.ClearField(field)
            blob.shape.CopyFrom(BlobShape(dim=[outputs, inputs, 1, 1]))
    return "\n".join(texts).encode(), model.SerializeToString()


def _reshape(name: str, bottom: str, dims: str, top: str | None = None) -> str:
    shape = " ".join(f"dim: {d}" for d in dims.split())
    return (f'layer {{ name: "{name}" type: "Reshape" bottom: "{bottom}" top: "{top or name}" '
            f"reshape_param {{ shape {{ {shape} }} }} }}")


def _permute(name: str, bottom: str) -> str:
    """Swaps axes 0 and 2: (N, K, 1, 1) <-> (1, K, N, 1)."""
    return (f'layer {{ name: "{name}" type: "Permute" bottom: "{bottom}" top: "{name}" '
            f"permute_param {{ order: 2 order: 1 order: 0 order: 3 }} }}")


def pick_backend(backend: str, weights: Path | str) -> str:
    """The backend that runs `weights`: `backend` itself, or for "auto" caffe where pycaffe imports, else
    onnxruntime where it is installed, else opencv; an ONNX file always onnxruntime. BadInput for an ONNX file and
    another backend."""
    if is_onnx(weights):
        if backend not in ("auto", "onnxruntime"):
            raise BadInput(f"{weights} is an ONNX model: the onnxruntime backend runs it, not {backend}")
        return "onnxruntime"
    if backend != "auto":
        return backend
    try:
        import_caffe()
        return "caffe"
    except CaffeNotFoundError:
        return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "opencv"


def why_picked(backend: str, weights: Path | str) -> str:
    """Why pick_backend's "auto" chose `backend` for `weights`, in a few words."""
    if is_onnx(weights):
        return f"{weights} is an ONNX model"
    no_pycaffe = (f"ILGNET_CAFFE_ROOT's Caffe ({os.environ['ILGNET_CAFFE_ROOT']}) has no pycaffe"
                  if os.environ.get("ILGNET_CAFFE_ROOT") else "no pycaffe here")
    return {"caffe": "pycaffe imports", "onnxruntime": f"{no_pycaffe}; onnxruntime is installed",
            "opencv": f"{no_pycaffe}, nor onnxruntime"}[backend]


def open_net(backend: str, net, weights: Path, *, output: str | None = None, gpu: int | None = None,
             variant: str = "") -> NetBackend:
    """The net (a deploy prototxt path or a NetParameter, of `variant` when it is one) with `weights` loaded in
    `backend` (one of BACKENDS; auto as pick_backend chooses), ready to forward inputs of any batch size: the
    NetBackend subclass whose `name` is the backend (defaults.BACKENDS lists them for the command line).
    UnknownName for another backend; CaffeNotFoundError (caffe without pycaffe), MissingPackage and BadInput as
    the backends raise them."""
    kind = lookup({kind.name: kind for kind in NetBackend.__subclasses__()}, pick_backend(backend, weights),
                  "scoring backend")
    return kind(net, weights, output=output, gpu=gpu, variant=variant)
