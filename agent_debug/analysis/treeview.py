"""What `agent-debug tree` shows: the tree filtered (errors, depth, minimum duration), runs of similar
siblings folded, orphans under "missing parent" nodes, broken cycles reported; and the nested JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_debug.analysis.tree import Tree, node_fields

FOLD_MIN = 3


@dataclass
class Row:
    """One line of the rendered tree."""

    depth: int
    kind: str  # span | fold | missing | cycle | more
    index: int | None = None  # span index for `span`, the first folded span for `fold`
    count: int = 1
    total_ns: int = 0
    errors: int = 0
    start_ns: int = 0
    end_ns: int = 0
    label: str = ""
    on_path: bool = False


@dataclass
class TreeView:
    trace_id: str
    start_ns: int
    end_ns: int
    rows: list[Row]
    spans: int
    shown: int
    orphans: int
    cycles: list[list[str]]
    truncated: int = 0  # rows left out beyond max_rows
    notes: list[str] = field(default_factory=list)


def _error_paths(tree: Tree) -> list[bool]:
    """True for error spans and every ancestor of one."""
    ts = tree.spans
    keep = [s == "error" for s in ts.status]
    for top in tree.tops:
        for i, _ in reversed(tree.walk(top)):
            if not keep[i] and any(keep[c] for c in tree.children[i]):
                keep[i] = True
    return keep


def _visible_children(tree: Tree, i: int, keep: list[bool] | None, min_ns: int) -> list[int]:
    ts = tree.spans
    return [c for c in tree.children[i]
            if (keep is None or keep[c]) and (tree.end_ns[c] - ts.start_ns[c] >= min_ns or ts.status[c] == "error")]


def _sig(tree: Tree, i: int) -> tuple[str, str, str]:
    ts = tree.spans
    return ts.agent_name[i], ts.event_type[i], ts.name[i]


def build_view(tree: Tree, critical: set[str] | None = None, *, errors_only: bool = False,
               max_depth: int | None = None, min_duration_ns: int = 0, max_rows: int = 5000) -> TreeView:
    ts = tree.spans
    critical = critical or set()
    keep = _error_paths(tree) if errors_only else None
    rows: list[Row] = []
    # an explicit stack of (kind, payload, depth); children pushed in reverse so they pop in order
    stack: list[tuple[str, Any, int]] = []
    tops: list[tuple[str, Any, int]] = [("span", r, 0) for r in tree.roots]
    for pid, group in tree.orphans.items():
        tops.append(("missing", (pid, group), 0))
    for cyc in tree.cycles:
        tops.append(("cycle", cyc, 0))
    stack.extend(reversed(tops))
    truncated = 0
    while stack:
        kind, payload, depth = stack.pop()
        if len(rows) >= max_rows:
            truncated += 1
            continue
        if kind == "missing":
            pid, group = payload
            rows.append(Row(depth, "missing", label=f"missing parent {pid}", count=len(group)))
            stack.extend(("span", g, depth + 1) for g in reversed(group))
            continue
        if kind == "cycle":
            rows.append(Row(depth, "cycle", label="cycle broken here: " + " -> ".join(ts.span_id[c] for c in payload),
                            count=len(payload)))
            stack.append(("span", payload[0], depth + 1))
            continue
        if kind == "fold":
            run = payload
            rows.append(Row(depth, "fold", run[0], count=len(run), total_ns=sum(ts.duration_ns[r] for r in run),
                            errors=sum(ts.status[r] == "error" for r in run),
                            start_ns=min(ts.start_ns[r] for r in run), end_ns=max(tree.end_ns[r] for r in run)))
            continue
        i = payload
        if keep is not None and not keep[i]:
            continue
        rows.append(Row(depth, "span", i, start_ns=ts.start_ns[i], end_ns=tree.end_ns[i],
                        total_ns=ts.duration_ns[i], errors=int(ts.status[i] == "error"),
                        on_path=ts.span_id[i] in critical))
        kids = _visible_children(tree, i, keep, min_duration_ns)
        if max_depth is not None and depth >= max_depth:
            if kids:
                hidden = sum(tree.subtree_size(k) for k in kids)
                rows.append(Row(depth + 1, "more", count=hidden, label=f"... {hidden} more spans (--depth)"))
            continue
        stack.extend(reversed(_fold(tree, kids, depth + 1, critical)))
    cycles = [[ts.span_id[c] for c in cyc] for cyc in tree.cycles]
    start = min(ts.start_ns) if len(ts) else 0
    end = max(tree.end_ns) if len(ts) else 0
    orphans = sum(len(g) for g in tree.orphans.values())
    view = TreeView(ts.trace_id, start, end, rows, len(ts), sum(1 for r in rows if r.kind == "span"),
                    orphans, cycles, truncated)
    if truncated:
        view.notes.append(f"{truncated} more rows not shown: use --depth, --min-duration or --errors")
    if cycles:
        view.notes.append(f"{len(cycles)} parent cycle(s) broken and reported, not followed")
    if tree.duplicates:
        view.notes.append(f"{len(tree.duplicates)} spans reuse an earlier span id and are not shown")
    return view


def _fold(tree: Tree, kids: list[int], depth: int, critical: set[str]) -> list[tuple[str, Any, int]]:
    """Children as stack items; runs of FOLD_MIN+ similar siblings (none critical) become one fold row."""
    ts = tree.spans
    out: list[tuple[str, Any, int]] = []
    j = 0
    while j < len(kids):
        k = j
        while k + 1 < len(kids) and _sig(tree, kids[k + 1]) == _sig(tree, kids[j]):
            k += 1
        run = kids[j : k + 1]
        if len(run) >= FOLD_MIN and not any(ts.span_id[r] in critical for r in run):
            out.append(("fold", run, depth))
        else:
            out.extend(("span", r, depth) for r in run)
        j = k + 1
    return out


def nested_json(tree: Tree, critical: dict[str, int] | None = None, *, errors_only: bool = False,
                max_depth: int | None = None, min_duration_ns: int = 0) -> dict[str, Any]:
    """{"trace_id", "roots": [node...], "missing_parents": [...], "cycles": [...]}; node = fields + children."""
    ts = tree.spans
    critical = critical or {}
    keep = _error_paths(tree) if errors_only else None

    def build(top: int) -> dict[str, Any]:
        root_node = _node(top)
        stack = [(top, root_node, 0)]
        while stack:
            i, node, d = stack.pop()
            if max_depth is not None and d >= max_depth:
                node["children"] = []
                node["hidden_descendants"] = tree.subtree_size(i) - 1
                continue
            kids = _visible_children(tree, i, keep, min_duration_ns)
            node["children"] = [_node(c) for c in kids]
            stack.extend((c, n, d + 1) for c, n in zip(kids, node["children"], strict=True))
        return root_node

    def _node(i: int) -> dict[str, Any]:
        n = node_fields(ts, i, tree)
        n["critical_ns"] = critical.get(ts.span_id[i], 0)
        return n

    def shown(top: int) -> list[int]:
        """The spans `build(top)` makes nodes of, in no particular order."""
        out, stack = [], [(top, 0)]
        while stack:
            i, d = stack.pop()
            out.append(i)
            if max_depth is None or d < max_depth:
                stack.extend((c, d + 1) for c in _visible_children(tree, i, keep, min_duration_ns))
        return out

    prefetch = getattr(ts.records, "prefetch", None)
    if prefetch is not None:  # records read lazily from the store: each stored chunk is read once, not per node
        tops = [r for r in tree.roots if keep is None or keep[r]]
        tops += [g for group in tree.orphans.values() for g in group if keep is None or keep[g]]
        tops += [cyc[0] for cyc in tree.cycles]
        prefetch(sorted({i for top in tops for i in shown(top)}))

    return {
        "trace_id": ts.trace_id,
        "roots": [build(r) for r in tree.roots if keep is None or keep[r]],
        "missing_parents": [{"parent_id": pid, "children": [build(g) for g in group if keep is None or keep[g]]}
                            for pid, group in tree.orphans.items()],
        "cycles": [{"span_ids": [ts.span_id[c] for c in cyc], "cut_at": ts.span_id[cyc[0]],
                    "subtree": build(cyc[0])} for cyc in tree.cycles],
    }
