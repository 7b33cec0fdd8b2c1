"""The process node expands $(VAR) in env values exactly as the kubelet does, so that an
integration test of what reaches a task means what it would on a real node."""

from __future__ import annotations

import pytest

from devcluster.processnode import expand

ENV = {"VAR_A": "A", "VAR_B": "B", "VAR_EMPTY": "", "VAR REF": "spaced", "$(VAR_A": "odd"}


# Cases from Kubernetes' third_party/forked/golang/expansion/expand_test.go and the
# kubelet's rules: $(NAME) up to the first ')' is replaced when NAME is defined and left
# as written otherwise, $$ is $, any other $ stays.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_B)", "A-B"),
        ("$(VAR_EMPTY)", ""),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$(VAR_A)", "$(VAR_A)"),
        ("$$$(VAR_A)", "$A"),
        ("$$$$(VAR_A)", "$$(VAR_A)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("$VAR_A", "$VAR_A"),
        ("$", "$"),
        ("$$", "$"),
        ("$$$", "$$"),
        ("price: $$5", "price: $5"),
        ("$(", "$("),
        ("$(VAR_A", "$(VAR_A"),
        ("$()", "$()"),
        ("$(VAR_A))", "A)"),
        ("$(VAR REF)", "spaced"),
        # The name runs to the first ')', whatever it holds: no nesting, no escapes inside.
        ("$($$)", "$($$)"),
        ("$($(VAR_A))", "odd)"),
        ("$($(VAR_B))", "$($(VAR_B))"),
        ("$(1X)", "$(1X)"),
        ("ü$(VAR_A)ü", "üAü"),
    ],
)
def test_expand_follows_the_kubelet(value: str, expected: str) -> None:
    assert expand(value, ENV) == expected


def test_escaped_values_expand_back_to_themselves() -> None:
    for value in ["$(VAR_A)", "price: $$5", "$", "$$(X)", "a$b$(c", "$($$)", "$$$"]:
        assert expand(value.replace("$", "$$"), ENV) == value
