"""`yaml.safe_load`, about twice as fast for Kubernetes manifests.

PyYAML's CSafeLoader parses in C but constructs every node in Python: per scalar, the
implicit resolver runs a handful of regular expressions and the constructor dispatches
through several generic layers. Manifests are almost all plain strings and small
integers, so here libyaml composes the node tree (without tag resolution), and a tight
walk builds dicts/lists, resolving only the scalars that could be something other than a
string (their first character is one YAML 1.1's resolvers look at) through PyYAML's own
resolver and SafeConstructor. Documents with explicit tags ("!"), merge keys ("<<") or
anchors ("&") are handed to CSafeLoader whole, so results always equal `yaml.safe_load`.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
try:
    from yaml.cyaml import CParser as _Parser
except ImportError:  # PyYAML built without libyaml: still correct, just not fast
    _Parser = None
_STR = "tag:yaml.org,2002:str"


class _NodeLoader(_Parser or yaml.BaseLoader):  # type: ignore[misc]
    """libyaml's composer without tag resolution: the composer calls these three per node.

    The tags they leave are never read: documents with explicit tags, the only tags that
    matter here, are loaded by CSafeLoader instead.
    """

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        return _STR

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


# First characters for which YAML 1.1's implicit resolvers may give a non-string (bool,
# null, int, float, timestamp, merge, value); any other plain scalar is a string.
_MAYBE_TYPED = frozenset("yYnNtTfFoO-+0123456789.~<=")
_resolver = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()


# The only plain scalars starting with a letter that YAML 1.1 (PyYAML's resolver) does not
# read as strings.
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
    **dict.fromkeys(("null", "Null", "NULL"), None),
}


def _typed_scalar(node: ScalarNode) -> Any:
    value = node.value
    if value.isdigit() and value.isascii() and (value[0] != "0" or value == "0"):
        return int(value)  # the common case: a port number
    if value[:1].isalpha():
        return _WORDS.get(value, value)  # "TCP", "fd00::1", "true"
    if value.count(".") > 1:
        return value  # an IPv4 address: ints, floats and timestamps have at most one "."
    tag = _resolver.resolve(ScalarNode, value, (True, False))
    if tag == _STR:
        return value
    return _constructor.construct_object(
        ScalarNode(tag, value, node.start_mark, node.end_mark, node.style), deep=True
    )


def _build(node: Any) -> Any:
    kind = type(node)
    if kind is ScalarNode:
        value = node.value
        if node.style or (value and value[0] not in _MAYBE_TYPED):
            return value  # quoted, block, or plainly a string
        return _typed_scalar(node)
    if kind is MappingNode:
        return {_build(k): _build(v) for k, v in node.value}
    return [_build(item) for item in node.value]


def load(text: str) -> Any:
    """Like `yaml.safe_load(text)` (one document); raises yaml.YAMLError the same way."""
    # Tags ("!"), merge keys ("<<") and anchors ("&": aliases must share one object, and
    # a "billion laughs" must not be expanded) go to the full loader.
    if "!" in text or "<<" in text or "&" in text:
        return yaml.load(text, Loader=_SafeLoader)
    loader = _NodeLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is None:
        return None
    try:
        return _build(node)
    except TypeError:  # an unhashable key: let PyYAML report it as YAML
        return yaml.load(text, Loader=_SafeLoader)
