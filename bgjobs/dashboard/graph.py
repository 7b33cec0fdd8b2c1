"""A workflow's steps laid out as a layered graph for an inline SVG: pure."""

from __future__ import annotations

from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y = 170, 46, 60, 22


def layers(steps: list[dict[str, Any]]) -> dict[str, int]:
    """Each step's column: the length of the longest dependency chain before it (unknown or
    cyclic dependencies count as none, so a bad spec still draws)."""
    deps = {s["name"]: [d for d in s.get("dependsOn") or []] for s in steps}
    level: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in level:
            return level[name]
        parents = [d for d in deps.get(name, []) if d in deps and d not in seen]
        level[name] = 1 + max((depth(d, seen | {name}) for d in parents), default=-1)
        return level[name]

    for s in steps:
        depth(s["name"], frozenset())
    return level


def layout(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Boxes (x, y per step) and edges (dependency → step) for the SVG, and its size."""
    level = layers(steps)
    rows: dict[int, int] = {}
    boxes: dict[str, dict[str, Any]] = {}
    for s in steps:
        col = level[s["name"]]
        row = rows.get(col, 0)
        rows[col] = row + 1
        boxes[s["name"]] = {
            **s,
            "x": 10 + col * (NODE_W + GAP_X),
            "y": 10 + row * (NODE_H + GAP_Y),
        }
    edges = [
        {
            "x1": boxes[d]["x"] + NODE_W,
            "y1": boxes[d]["y"] + NODE_H // 2,
            "x2": b["x"],
            "y2": b["y"] + NODE_H // 2,
        }
        for b in boxes.values()
        for d in b.get("dependsOn") or []
        if d in boxes
    ]
    width = 20 + (max(level.values(), default=0) + 1) * (NODE_W + GAP_X)
    height = 20 + max(rows.values(), default=1) * (NODE_H + GAP_Y)
    return {
        "boxes": list(boxes.values()),
        "edges": edges,
        "width": width,
        "height": height,
        "node_w": NODE_W,
        "node_h": NODE_H,
    }
