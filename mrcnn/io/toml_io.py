"""Minimal TOML emitter for flat config tables (read back with ``tomllib``).

Only what ``Config.to_toml`` needs: ``key = value`` lines where a value is
None (written as the string "None": TOML has no null), a bool, a number, a
string, a list or a dict (an inline table).

Never imports TensorFlow or Keras.
"""
import math
import numbers
import re

import numpy as np

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
            "\f": "\\f", "\r": "\\r"}


class TomlValueError(ValueError):
    """A value has no TOML form; the message names it and what to use instead."""


def _toml_string(s):
    return '"%s"' % "".join(
        _ESCAPES.get(ch) or ("\\u%04x" % ord(ch) if ord(ch) < 0x20 or ord(ch) == 0x7f else ch)
        for ch in s)


def _toml_value(v):
    if v is None:
        return '"None"'  # TOML has no null; "None" loads back as None
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        v = float(v)
        return "nan" if math.isnan(v) else ("%sinf" % "-"[:v < 0]) if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[%s]" % ", ".join(_toml_value(x) for x in list(v))
    if isinstance(v, dict):
        return "{%s}" % ", ".join("%s = %s" % (_toml_key(k), _toml_value(x))
                                  for k, x in v.items())
    raise TomlValueError("Value %r cannot be written to TOML; use numbers, strings, booleans, "
                      "lists or dicts" % (v,))


def _toml_key(k):
    k = str(k)
    return k if _BARE_KEY.match(k) else _toml_string(k)


def dumps_table(d):
    """"key = value" lines of a flat dict (nested dicts become inline tables)."""
    return "".join("%s = %s\n" % (_toml_key(k), _toml_value(v)) for k, v in d.items())
