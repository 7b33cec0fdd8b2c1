"""The graph of a JobWorkflow's steps: pure functions over ``{step: [dependencies]}``, shared
by the API model (refusing cycles), the operator (ordering steps) and the canvas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as the list of its steps, first repeated last (``[a, b, a]``), or None.
    Dependencies that name no step are ignored (another rule reports those)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def sinks(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Steps no other step depends on, in declaration order: the workflow's results."""
    needed = {dep for deps in graph.values() for dep in deps}
    return [node for node in graph if node not in needed]
