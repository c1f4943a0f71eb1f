"""Caffe's protobuf messages without pycaffe: `from ilgnet.bvlc.proto import NetParameter, Datum, ...`.

The messages come from caffe.proto beside this file (the subset of Caffe's schema the toolkit uses), read by a
small parser of the proto2 syntax it is written in and built at import time with protobuf's descriptor API into a
pool of their own. So nets, solvers, caffemodels, mean files and LMDB records are read and written the same way
whether or not Caffe is installed, in microseconds instead of pycaffe's 1.4 s import (which pulls in
scikit-image), and without clashing with pycaffe's caffe_pb2 when both are loaded. A binary message keeps the
fields this schema leaves out as unknown fields; `parse_text` skips them.
"""
from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

SCHEMA = Path(__file__).with_name("caffe.proto")
MESSAGES = ("BlobShape", "BlobProto", "Datum", "FillerParameter", "NetParameter", "SolverParameter", "SolverState",
            "NetState", "NetStateRule", "ParamSpec", "LayerParameter", "V1LayerParameter")

_SCALARS = {name: getattr(descriptor_pb2.FieldDescriptorProto, f"TYPE_{name.upper()}")
            for name in ("double", "float", "int64", "uint64", "int32", "uint32", "bool", "string", "bytes")}
_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|-?[\d.]+(?:e-?\d+)?|[{}=;\[\],]')


def _file_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of a proto2 file made of enums and flat messages (the syntax of caffe.proto here)."""
    tokens = _TOKEN.findall(re.sub(r"//[^\n]*", "", text))
    proto = descriptor_pb2.FileDescriptorProto(name="ilgnet/caffe.proto", package="caffe", syntax="proto2")
    enums: dict[str, str] = {}          # enum name as written -> its full name
    fields: list[tuple] = []            # (message descriptor, field descriptor, type name as written)
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        if expected is not None and token != expected:
            raise ValueError(f"{SCHEMA}: expected {expected!r}, found {token!r} (token {pos})")
        pos += 1
        return token

    def enum_into(container, scope: str) -> None:
        name = take()
        enum = container.enum_type.add(name=name)
        enums[name if not scope else f"{scope}.{name}"] = f".caffe.{scope + '.' if scope else ''}{name}"
        take("{")
        while tokens[pos] != "}":
            value_name = take()
            take("=")
            enum.value.add(name=value_name, number=int(take()))
            take(";")
        take("}")

    while pos < len(tokens):
        keyword = take()
        if keyword in ("syntax", "package"):
            while take() != ";":
                pass
        elif keyword == "enum":
            enum_into(proto, "")
        elif keyword == "message":
            message = proto.message_type.add(name=take())
            take("{")
            while tokens[pos] != "}":
                if tokens[pos] == "enum":
                    take()
                    enum_into(message, message.name)
                    continue
                label, type_name, field_name = take(), take(), take()
                take("=")
                field = message.field.add(name=field_name, number=int(take()), label=getattr(
                    descriptor_pb2.FieldDescriptorProto, f"LABEL_{label.upper()}"))
                if tokens[pos] == "[":
                    take()
                    while True:
                        option, _, value = take(), take("="), take()
                        if option == "packed":
                            field.options.packed = value == "true"
                        else:
                            field.default_value = value.strip('"')
                        if take() == "]":
                            break
                take(";")
                fields.append((message, field, type_name))
            take("}")
        else:
            raise ValueError(f"{SCHEMA}: unexpected {keyword!r} (token {pos - 1})")
    for message, field, type_name in fields:
        if type_name in _SCALARS:
            field.type = _SCALARS[type_name]
        elif f"{message.name}.{type_name}" in enums or type_name in enums:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
            field.type_name = enums.get(f"{message.name}.{type_name}") or enums[type_name]
        else:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
            field.type_name = f".caffe.{type_name}"
    return proto


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file_descriptor(SCHEMA.read_text()))
_classes = {name: message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"caffe.{name}")) for name in MESSAGES}
BlobShape = _classes["BlobShape"]
BlobProto = _classes["BlobProto"]
Datum = _classes["Datum"]
NetParameter = _classes["NetParameter"]
SolverParameter = _classes["SolverParameter"]
SolverState = _classes["SolverState"]
LayerParameter = _classes["LayerParameter"]
TRAIN, TEST = 0, 1      # caffe.Phase


def descriptor(name: str):
    """The descriptor of message `name` (e.g. "LayerParameter") in this schema."""
    return _pool.FindMessageTypeByName(f"caffe.{name}")


def parse_text(text: str, message):
    """Fills `message` from protobuf text format (a prototxt), skipping fields this schema does not declare.

    Raises text_format.ParseError, whose message gives the line and column, on text that is not a prototxt.
    """
    return text_format.Parse(text, message, allow_unknown_field=True)


def to_text(message) -> str:
    """A message in protobuf text format, as Caffe's prototxt files write it.

    protobuf's C implementation prints float fields as C++ Caffe does (`lr_mult: 1`); its Python text_format would
    write `1.0`, which Caffe reads the same but which would change every committed prototxt.
    """
    return str(message)
