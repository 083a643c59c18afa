"""mrcnn.io.toml_io: dumps_table's output read back with tomllib gives the values written."""
import math
import tomllib

import numpy as np
import pytest

from mrcnn.io.toml_io import TomlValueError, dumps_table


def _round_trip(table):
    return tomllib.loads(dumps_table(table))


@pytest.mark.parametrize("value", [
    "", "plain", 'say "hi"', "back\\slash", "C:\\new\\table", "tab\there", "line\nbreak", "cr\rlf",
    "bell\x07 del\x7f nul\x00 esc\x1b", "\b\f", "unicode: é ß 日本 😀", "'single' quotes", "# not a comment",
    "a = b", "[not a table]", '"""', "\\u0041 is not an escape here",
])
def test_strings_round_trip(value):
    assert _round_trip({"s": value}) == {"s": value}


def test_scalars_and_lists_round_trip():
    table = {"t": True, "f": False, "i": 7, "neg": -3, "big": 2 ** 62, "x": 0.1, "tiny": 5e-324,
             "e": 1e300, "third": 1 / 3, "zero": -0.0, "list": [1, 2.5, "a", [True, "b"]],
             "empty": [], "tuple": (1, 2)}
    out = _round_trip(table)
    assert out == {**table, "tuple": [1, 2]}
    assert math.copysign(1.0, out["zero"]) == -1.0
    assert type(out["i"]) is int and type(out["x"]) is float


def test_none_is_written_as_the_string_none():
    assert dumps_table({"backbone_strides": None}) == 'backbone_strides = "None"\n'
    assert _round_trip({"n": None, "l": [None, 1]}) == {"n": "None", "l": ["None", 1]}


def test_inf_and_nan():
    out = _round_trip({"p": float("inf"), "m": -float("inf"), "n": float("nan"),
                       "np": np.float32("-inf")})
    assert out["p"] == math.inf and out["m"] == -math.inf and out["np"] == -math.inf
    assert math.isnan(out["n"])
    assert dumps_table({"p": math.inf, "m": -math.inf}) == "p = inf\nm = -inf\n"


def test_numpy_scalars_and_arrays():
    table = {"i32": np.int32(5), "u8": np.uint8(255), "i64": np.int64(-2 ** 40), "f64": np.float64(0.1),
             "f32": np.float32(0.5), "b": np.bool_(True), "nb": np.bool_(False),
             "arr": np.array([1, 2, 3]), "farr": np.array([0.25, 1.5]), "barr": np.array([True, False]),
             "grid": np.arange(4).reshape(2, 2)}
    out = _round_trip(table)
    assert out == {"i32": 5, "u8": 255, "i64": -2 ** 40, "f64": 0.1, "f32": 0.5, "b": True, "nb": False,
                   "arr": [1, 2, 3], "farr": [0.25, 1.5], "barr": [True, False], "grid": [[0, 1], [2, 3]]}
    assert dumps_table({"b": np.bool_(True)}) == "b = true\n"   # a bool, never 1
    # A float32 is written as the float64 it widens to: exact, if not the shortest decimal.
    assert _round_trip({"f": np.float32(0.1)})["f"] == float(np.float32(0.1))


def test_nested_dicts_and_quoted_keys():
    table = {"inline": {"a": 1, "b": {"c": [1, 2], "d": "x"}}, "with space": 1, "dotted.key": 2,
             "quote\"key": 3, "日本": 4, "bare_key-1": 5, 7: "int key"}
    out = _round_trip(table)
    assert out == {"inline": {"a": 1, "b": {"c": [1, 2], "d": "x"}}, "with space": 1, "dotted.key": 2,
                   "quote\"key": 3, "日本": 4, "bare_key-1": 5, "7": "int key"}
    text = dumps_table({"bare_key-1": 1, "with space": 2})
    assert text == 'bare_key-1 = 1\n"with space" = 2\n'


def test_one_line_per_key_in_order():
    text = dumps_table({"b": 1, "a": "x\ny", "c": [1]})
    assert text.splitlines() == ["b = 1", 'a = "x\\ny"', "c = [1]"]
    assert dumps_table({}) == ""


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", 1 + 2j, [1, object()], {"k": {"deep": set()}}])
def test_unsupported_values_raise(value):
    with pytest.raises(TomlValueError, match="cannot be written to TOML"):
        dumps_table({"bad": value})
    assert issubclass(TomlValueError, ValueError)
