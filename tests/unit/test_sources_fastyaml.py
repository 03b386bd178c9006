"""fastyaml.load must give exactly what yaml.safe_load gives, only faster."""

from __future__ import annotations

import datetime

import pytest
import yaml

from kmesh_node.sources import fastyaml
from kmesh_node.sources.fastyaml import _WORDS

DOCUMENTS = [
    "",
    "# only a comment\n",
    "plain: text\nnumber: 8080\nzero: 0\nquoted: '80'\ndq: \"443\"\n",
    "ip: 10.96.0.10\nv6: fd00::a\nv6digit: 2001:db8::1\nmapped: ::ffff:1.2.3.4\n",
    "octal: 010\nhex: 0x1F\nunderscore: 1_000\nsigned: -5\nplus: +7\nsexagesimal: 1:20\n",
    "f: 1.5\ne: 1.0e+3\ninf: .inf\nninf: -.Inf\nnan: .NaN\ndot: .5\n",
    "date: 2024-01-02\nts: 2001-12-14t21:59:43.10-05:00\n",
    "empty:\ntilde: ~\nnull1: null\nNULL2: NULL\n",
    "list: [a, 1, true, no, off, On, Yes, 'yes', y, n, TCP, UDP]\n",
    "nested:\n  - name: http\n    port: 80\n  - {name: dns, port: 53, protocol: UDP}\n",
    "anchor: &a {x: 1}\nalias: *a\nlist: &l [1, 2]\nagain: *l\n",
    "merge:\n  base: &b {x: 1, y: 2}\n  derived:\n    <<: *b\n    y: 3\n",
    "tagged: !!str 80\nint: !!int '42'\n",
    "block: |\n  line one\n  line two\nfolded: >\n  a\n  b\n",
    "lt: <x\nweird: -x\n",
    "unicode: \u00e9t\u00e9\ndigits: \u0661\u0662\n",
    "- a\n- 1\n- 1.2.3.4\n",
    "just a string\n",
    "42\n",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_same_result_as_safe_load(text: str) -> None:
    expected = yaml.safe_load(text)
    got = fastyaml.load(text)
    assert got == expected or (got != got and expected != expected)  # NaN != NaN
    assert type(got) is type(expected)
    if isinstance(expected, dict):
        for key, value in expected.items():
            if value == value:  # not NaN
                assert got[key] == value
                assert type(got[key]) is type(value), key


def test_aliases_share_one_object_like_safe_load() -> None:
    got = fastyaml.load("a: &x {k: 1}\nb: *x\n")
    assert got["a"] is got["b"]


def test_words_table_agrees_with_pyyaml_resolver() -> None:
    for word, value in _WORDS.items():
        assert yaml.safe_load(f"v: {word}")["v"] is value, word
    for word in ("y", "n", "Y", "N", "tRUE", "nul", "TCP", "default", "fd00::1"):
        assert isinstance(yaml.safe_load(f"v: {word}")["v"], str)
        assert fastyaml.load(f"v: {word}")["v"] == word


def test_timestamps_still_become_dates() -> None:
    assert fastyaml.load("d: 2024-01-02\n")["d"] == datetime.date(2024, 1, 2)


@pytest.mark.parametrize(
    "text", ["a: [1, 2\n", "a: b: c\n", "{unclosed\n", "a: !Ref x\n", "? [1]\n: v\n"]
)
def test_broken_or_unsafe_yaml_raises_yaml_error(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        fastyaml.load(text)
