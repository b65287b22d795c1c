"""Writes a GGUF v3 file with numpy alone: header, metadata, tensor infos, 32-byte aligned data."""

import struct

import numpy as np

ALIGNMENT = 32
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9


def _string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(kind, value):
    if kind == U32:
        return struct.pack("<I", value)
    if kind == I32:
        return struct.pack("<i", value)
    if kind == F32:
        return struct.pack("<f", value)
    if kind == BOOL:
        return struct.pack("<?", value)
    if kind == STRING:
        return _string(value)
    raise ValueError(kind)


def _pad(length):
    return (ALIGNMENT - length % ALIGNMENT) % ALIGNMENT


def write_gguf(path, metadata, tensors):
    """metadata: [(key, kind, value)], an ARRAY's value being (element kind, list);
    tensors: [(name, float32 ndarray)] (a torch (out, in) matrix is written as GGUF's [in, out])."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, kind, value in metadata:
        out += _string(key) + struct.pack("<I", kind)
        if kind == ARRAY:
            element, items = value
            out += struct.pack("<IQ", element, len(items))
            for item in items:
                out += _value(element, item)
        else:
            out += _value(kind, value)
    offset = 0
    blobs = []
    for name, array in tensors:
        array = np.ascontiguousarray(array, dtype=np.float32)
        out += _string(name) + struct.pack("<I", array.ndim)
        for dim in reversed(array.shape):
            out += struct.pack("<Q", dim)
        out += struct.pack("<IQ", 0, offset)  # type 0: F32
        blob = array.tobytes()
        blobs.append(blob)
        offset += len(blob) + _pad(len(blob))
    out += b"\0" * _pad(len(out))
    for blob in blobs:
        out += blob + b"\0" * _pad(len(blob))
    with open(path, "wb") as file:
        file.write(out)
