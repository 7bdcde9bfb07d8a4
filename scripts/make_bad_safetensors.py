#!/usr/bin/env python3
"""Regenerate tests/data/safetensors_bad/: small malformed safetensors files (bad_*) that the reader must
reject with a clear error, and valid ones (good_*) that it must accept. Plain Python, deterministic.

    python3 scripts/make_bad_safetensors.py            # rewrite the corpus
    python3 scripts/make_bad_safetensors.py --check    # also ask the reference library (pip safetensors,
                                                       # numpy) which files it accepts, and regenerate
                                                       # good_reference.safetensors with its writer

The expected message fragments for each bad file live in tests/test_safetensors.c (BAD[] table); add a
row there when adding a file here (the test fails on any bad_* file it does not know).
"""
import json
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "safetensors_bad")
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def pack(header, data=b"", pad=True, n=None):
    """header: dict (serialized compactly like the reference) or raw str/bytes; n overrides the length."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    if isinstance(header, str):
        header = header.encode("utf-8")
    if pad:
        header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def layout(tensors, meta=None):
    """tensors: list of (name, dtype, shape, raw bytes); returns (header dict, data) laid out in order."""
    h, data = {}, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return h, data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


QKV = "blocks.0.attn.qkv.weight"
GOOD_TENSORS = [
    (QKV, "F32", [2, 3], f32(0.5, -1.0, 2.0, 3.25, -0.125, 100.0)),
    ("blocks.0.norm.h", "F16", [3], struct.pack("<3e", 1.0, -2.0, 0.5)),
    ("scale", "F64", [], struct.pack("<d", 1.5)),
    ("empty", "I32", [0, 4], b""),
    ("bf", "BF16", [2], struct.pack("<2H", 0x3FC0, 0xC000)),  # 1.5, -2.0
    ("ids", "I64", [2], struct.pack("<2q", 7, -7)),
]


def entry(dt="F32", shape=(2, 3), off=(0, 24)):
    return {"dtype": dt, "shape": list(shape), "data_offsets": list(off)}


def corpus():
    good_h, good_d = layout(GOOD_TENSORS, {"format": "pt", "note": "caf\u00e9 \"q\""})
    good = pack(good_h, good_d)
    n_good = struct.unpack("<Q", good[:8])[0]
    d24 = bytes(range(24))
    one = lambda e, data=d24, **kw: pack({QKV: e}, data, **kw)  # noqa: E731
    deep = "[" * 5000 + "1" + "]" * 5000
    f = {
        "good_small.safetensors": good,
        "good_empty.safetensors": pack({}),
        "good_unpadded.safetensors": pack({QKV: entry()}, d24, pad=False),
        # length field and truncation
        "bad_empty.safetensors": b"",
        "bad_short.safetensors": b"\x10\x00\x00\x00",
        "bad_header_cut.safetensors": good[: 8 + n_good // 2],
        "bad_data_cut.safetensors": good[:-3],
        "bad_header_len_huge.safetensors": pack("{}", n=200_000_000),
        "bad_header_len_past_eof.safetensors": pack("{}", n=1000),
        "bad_header_len_zero.safetensors": pack(b"", d24, n=0),
        "bad_trailing_bytes.safetensors": good + b"junk",
        "bad_trailing_bytes_no_tensors.safetensors": pack({}, b"xyz"),
        # JSON syntax
        "bad_json_missing_colon.safetensors": pack('{"%s" {"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}' % QKV, d24),
        "bad_json_trailing_comma.safetensors": pack('{"%s":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},}' % QKV, d24),
        "bad_json_unterminated.safetensors": pack('{"blocks.0.attn', pad=False),
        "bad_json_bad_escape.safetensors": pack('{"a\\x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', d24),
        "bad_json_bad_utf8.safetensors": pack(b'{"a\xff":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', d24),
        "bad_json_overlong_utf8.safetensors": pack(b'{"a\xc0\xaf":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', d24),
        "bad_json_lone_surrogate.safetensors": pack('{"a\\ud800":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', d24),
        "bad_json_nul_escape.safetensors": pack('{"a\\u0000b":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', d24),
        "bad_json_control_char.safetensors": pack('{"a\nb":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', d24),
        "bad_json_trailing_garbage.safetensors": pack('{"%s":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}} x' % QKV, d24),
        "bad_json_nul_padding.safetensors": pack(b'{}\0\0\0\0\0\0', pad=False),
        "bad_header_not_object.safetensors": pack("[1,2]"),
        "bad_entry_not_object.safetensors": pack('{"%s":[0,24]}' % QKV, d24),
        "bad_deep_nesting_top.safetensors": pack("[" * 20000),
        "bad_deep_nesting_shape.safetensors": pack('{"%s":{"dtype":"F32","shape":%s,"data_offsets":[0,4]}}' % (QKV, deep), d24[:4]),
        "bad_deep_nesting_meta.safetensors": pack('{"__metadata__":{"a":' + '{"b":' * 2000 + '"c"' + "}" * 2000 + "}}"),
        # entries
        "bad_unknown_dtype.safetensors": one(entry(dt="F8_E4M3", shape=(24,))),
        "bad_dtype_not_string.safetensors": one({"dtype": 4, "shape": [2, 3], "data_offsets": [0, 24]}),
        "bad_shape_negative.safetensors": one(entry(shape=(-2, -3))),
        "bad_shape_float.safetensors": one(entry(shape=(2.0, 3))),
        "bad_shape_exponent.safetensors": pack('{"%s":{"dtype":"F32","shape":[2e0,3],"data_offsets":[0,24]}}' % QKV, d24),
        "bad_shape_not_list.safetensors": one({"dtype": "F32", "shape": 6, "data_offsets": [0, 24]}),
        "bad_shape_null.safetensors": one({"dtype": "F32", "shape": None, "data_offsets": [0, 24]}),
        "bad_shape_leading_zero.safetensors": pack('{"%s":{"dtype":"F32","shape":[02,3],"data_offsets":[0,24]}}' % QKV, d24),
        "bad_rank9.safetensors": one(entry(shape=(1,) * 8 + (6,))),
        "bad_numel_overflow.safetensors": one(entry(shape=(2**32, 2**32))),
        "bad_bytes_overflow.safetensors": one(entry(shape=(2**31, 2**31))),
        "bad_int_too_large.safetensors": one(entry(off=(0, 10**20))),
        "bad_missing_offsets.safetensors": one({"dtype": "F32", "shape": [2, 3]}),
        "bad_missing_dtype.safetensors": one({"shape": [2, 3], "data_offsets": [0, 24]}),
        "bad_extra_key.safetensors": one({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24], "foo": 1}),
        "bad_duplicate_key.safetensors": pack('{"%s":{"dtype":"F32","dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}' % QKV, d24),
        "bad_duplicate_name.safetensors": pack(
            '{"%s":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"%s":{"dtype":"F32","shape":[2,3],"data_offsets":[24,48]}}'
            % (QKV, QKV), d24 + d24),
        # offsets
        "bad_offsets_three.safetensors": one({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24, 48]}),
        "bad_offsets_one.safetensors": one({"dtype": "F32", "shape": [2, 3], "data_offsets": [24]}),
        "bad_offsets_negative.safetensors": one(entry(off=(-24, 0))),
        "bad_offsets_reversed.safetensors": one(entry(off=(24, 0))),
        "bad_offsets_size_mismatch.safetensors": one(entry(off=(0, 20)), d24[:20]),
        "bad_offsets_not_zero_start.safetensors": one(entry(off=(8, 32)), d24 + d24[:8]),
        "bad_offsets_overlap.safetensors": pack({"a": entry(off=(0, 24)), QKV: entry(off=(16, 40))}, d24 + d24[:16]),
        "bad_offsets_gap.safetensors": pack({"a": entry(off=(0, 24)), QKV: entry(off=(32, 56))}, d24 * 2 + d24[:8]),
        # metadata
        "bad_metadata_not_string.safetensors": pack({"__metadata__": {"format": 1}}),
        "bad_metadata_not_object.safetensors": pack({"__metadata__": "pt"}),
        "bad_metadata_duplicate_key.safetensors": pack('{"__metadata__":{"format":"pt","format":"np"}}'),
        "bad_metadata_twice.safetensors": pack('{"__metadata__":{},"__metadata__":{}}'),
    }
    return f


def reference_check(files):
    """Which files does the reference reader (pip safetensors) accept? Informational: we may be stricter."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save

    ref = save({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "h": np.array([1, -2, 0.5], np.float16),
                "s": np.array(1.5, np.float64), "z": np.zeros((0, 4), np.int32), "b": np.array([1, 0, 1], np.bool_),
                "u": np.arange(5, dtype=np.uint8), "i16": np.array([-3, 3], np.int16), "i8": np.array([-1], np.int8),
                "q": np.array([1 << 40], np.int64), "k\u00e9y \"x\"": np.ones(2, np.float32)},
               metadata={"format": "np"})
    files["good_reference.safetensors"] = ref
    with open(os.path.join(OUT, "good_reference.safetensors"), "wb") as fh:
        fh.write(ref)
    for name in sorted(files):
        path = os.path.join(OUT, name)
        try:
            with safe_open(path, "np") as fh:  # opening validates the whole header and layout
                fh.keys()
            verdict = "accepts"
        except Exception as e:  # noqa: BLE001  (any failure counts as a rejection)
            verdict = "rejects (%s)" % str(e).splitlines()[0][:70]
        expect = "accepts" if name.startswith("good_") else "rejects"
        mark = "" if verdict.startswith(expect) else "   <- reference differs (we are stricter)"
        print("%-44s reference %s%s" % (name, verdict, mark))


def main():
    os.makedirs(OUT, exist_ok=True)
    files = corpus()
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as fh:
            fh.write(data)
    if "--check" in sys.argv:
        reference_check(files)
    print("wrote %d files to %s" % (len(files), os.path.normpath(OUT)))


if __name__ == "__main__":
    main()
