#!/usr/bin/env python3
"""Changes one byte of the first tensor's data in a safetensors file (in
place): the same model shape with other weights, as a fine-tune is.

usage: flip_weight_byte.py FILE.safetensors
"""
import struct
import sys

path = sys.argv[1]
with open(path, "r+b") as f:
    header_length = struct.unpack("<Q", f.read(8))[0]
    offset = 8 + header_length
    f.seek(offset)
    byte = f.read(1)[0]
    f.seek(offset)
    f.write(bytes([byte ^ 0x01]))
