"""Caffe models in other formats: the ONNX converter (`converter`: the deploy net and a caffemodel's blobs as an ONNX
graph), the exports kept beside a caffemodel for scoring (`cache`), and their fp16 and int8 versions (`precision`).
What a model is and how its ONNX metadata read stays in ilgnet.zoo; this layer sits above it."""
