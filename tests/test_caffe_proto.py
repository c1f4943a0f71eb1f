"""ilgnet.bvlc.proto: Caffe's messages without pycaffe. Every field of the schema is pycaffe's own field (name,
number, type, label, default, packing), and the bytes it writes are the bytes pycaffe writes."""
from __future__ import annotations

import numpy as np
import pytest

from ilgnet.bvlc import proto as caffe_proto
from ilgnet.bvlc.io import blobproto_bytes, datum_bytes, datum_image
from ilgnet.nets import deploy


def test_every_declared_field_is_pycaffes(caffe):
    checked = 0
    for name in caffe_proto.MESSAGES + ("TransformationParameter", "ConvolutionParameter", "PoolingParameter",
                                        "LRNParameter", "DataParameter", "InnerProductParameter", "ScaleParameter",
                                        "BatchNormParameter", "InputParameter", "DropoutParameter"):
        ours, theirs = caffe_proto.descriptor(name), caffe.proto.caffe_pb2.DESCRIPTOR.message_types_by_name[name]
        for field in ours.fields:
            real = theirs.fields_by_name.get(field.name)
            assert real is not None, f"{name}.{field.name} is not a field of Caffe's {name}"
            assert (field.number, field.type, field.is_repeated, field.is_packed) == \
                   (real.number, real.type, real.is_repeated, real.is_packed), f"{name}.{field.name}"
            assert field.has_default_value == real.has_default_value and \
                   field.default_value == real.default_value, f"{name}.{field.name} default"
            if field.enum_type is not None:
                assert {v.name: v.number for v in field.enum_type.values} == \
                       {v.name: v.number for v in real.enum_type.values}, f"{name}.{field.name} values"
            checked += 1
    assert checked > 150


def test_records_and_means_are_pycaffes_bytes(caffe):
    chw = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    theirs = caffe.io.array_to_datum(chw, 0)
    theirs.encoded = False                                  # as convert_imageset sets it
    assert datum_bytes(chw, 0) == theirs.SerializeToString()
    mean = np.random.default_rng(1).uniform(0, 255, (3, 4, 6)).astype(np.float32)
    theirs = caffe.io.array_to_blobproto(mean[None])
    ours = caffe.proto.caffe_pb2.BlobProto.FromString(blobproto_bytes(mean))
    assert np.array_equal(caffe.io.blobproto_to_array(ours)[0], caffe.io.blobproto_to_array(theirs)[0])


@pytest.mark.parametrize("variant", ["ilgnet", "ilgnet-inc3"])
def test_generated_nets_parse_identically_in_pycaffe(caffe, variant):
    ours = deploy(variant)
    theirs = caffe.proto.caffe_pb2.NetParameter.FromString(ours.SerializeToString())
    assert str(theirs) == caffe_proto.to_text(ours)


def test_a_datum_round_trips_without_caffe():
    chw = np.arange(3 * 4 * 2, dtype=np.uint8).reshape(3, 4, 2)
    datum = caffe_proto.Datum.FromString(datum_bytes(chw, 1))
    assert (datum.channels, datum.height, datum.width, datum.label, datum.encoded) == (3, 4, 2, 1, False)
    assert np.array_equal(datum_image(datum), chw.transpose(1, 2, 0))


@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 256, 256), (1, 1, 1), (3, 300, 2000)])
@pytest.mark.parametrize("label", [0, 1, 127, 128, -1, 2**31 - 1, -2**31])
def test_a_raw_datum_is_its_frame_around_the_pixels(shape, label):
    """datum_frame's head and tail around the pixels are the bytes the protobuf library writes for the whole Datum
    (lengths of one to four varint bytes, negative labels in ten)."""
    from ilgnet.bvlc.io import datum_frame

    chw = np.random.default_rng(label % 7).integers(0, 256, shape, dtype=np.uint8)
    whole = caffe_proto.Datum(channels=shape[0], height=shape[1], width=shape[2], data=chw.tobytes(), label=label,
                              encoded=False).SerializeToString()
    head, tail = datum_frame(*shape, label)
    assert head + chw.tobytes() + tail == whole == datum_bytes(chw, label)


def test_text_format_keeps_caffes_float_style_and_skips_unknown_fields():
    layer = caffe_proto.parse_text('name: "x" type: "ReLU" param { lr_mult: 1 } future_param { a: 1 }',
                                   caffe_proto.LayerParameter())
    assert caffe_proto.to_text(layer) == 'name: "x"\ntype: "ReLU"\nparam {\n  lr_mult: 1\n}\n'


def test_a_binary_file_given_as_a_prototxt_is_named_as_such(tmp_path):
    """A photo or a caffemodel given where a prototxt goes (`--deploy photo.jpg`) is named as binary, not quoted:
    its bytes would fill the terminal with unprintable characters."""
    from ilgnet.bvlc.io import read_prototxt
    from ilgnet.errors import BadInput

    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00")
    with pytest.raises(BadInput) as binary:
        read_prototxt(photo)
    assert str(binary.value) == f"{photo} is not a prototxt: it holds binary data (a caffemodel, a photo?), not text"
    stray = tmp_path / "deploy.prototxt"
    stray.write_bytes(b'name: "x"\n\x1b[2J\xe9 layer {')
    with pytest.raises(BadInput) as syntax:
        read_prototxt(stray)
    assert str(syntax.value).startswith(f"{stray}:2:") and str(syntax.value).isprintable()
