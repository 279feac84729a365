"""The functional model's graph, checked by name: every input, layer and output wired right.

The builder (`runner.models.build.build_functional`) wires layers in the order they are
listed, so a layer may only read inputs and layers listed before it.
"""

from __future__ import annotations

from runner.spec.errors import SpecError, did_you_mean


def graph_errors(spec) -> list[SpecError]:
    """Unknown, duplicate, late and unused names, and cycles, of `model.functional`."""
    functional = spec.get("model", "functional")
    if not isinstance(functional, dict):
        return []
    path = ("model", "functional")
    inputs = functional.get("inputs") if isinstance(functional.get("inputs"), dict) else {}
    items = [i for i in functional.get("layers") or [] if isinstance(i, dict)] if isinstance(functional.get("layers"), list) else []
    errors = []
    defined = {name: (*path, "inputs", name) for name in inputs}
    names = [item.get("name") for item in items]
    every = set(inputs) | {n for n in names if isinstance(n, str)}
    # layer -> what it reads: its inputs, and the nodes its call arguments name
    feeds = {item.get("name"): _names(item.get("inputs", [])) + [n for _, n, _ in call_references(item, every)]
             for item in items}
    for i, item in enumerate(items):
        name = item.get("name")
        where = (*path, "layers", i)
        if name in defined:
            errors.append(spec.error((*where, "name"), f"the name {name!r} is already used (names must be unique)", at_value=True))
        sources = _names(item.get("inputs", []))
        for j, source in enumerate(sources):
            at = (*where, "inputs") if isinstance(item.get("inputs"), str) else (*where, "inputs", j)
            if source in defined:
                continue
            if source in names[i:]:
                errors.append(spec.error(at, _late_message(source, name, feeds, names, i), at_value=True))
            else:
                known = list(defined)
                errors.append(spec.error(at, f"unknown input {source!r} (known so far: {', '.join(map(repr, known))})",
                                         did_you_mean(source, known + names), at_value=True))
        for source, at in ((n, (*where, "call", *rest)) for _, n, rest in call_references(item, every)):
            if source not in defined:
                errors.append(spec.error(at, _late_message(source, name, feeds, names, i), at_value=True))
        defined.setdefault(name, where)
    outputs = _names(functional.get("outputs"))
    for j, output in enumerate(outputs):
        at = (*path, "outputs") if isinstance(functional.get("outputs"), str) else (*path, "outputs", j)
        if output not in defined:
            errors.append(spec.error(at, f"unknown output {output!r}", did_you_mean(output, list(defined)), at_value=True))
    if not errors:  # a wrong name above would make everything after it look unused
        errors += _unused(spec, path, inputs, items, feeds, outputs)
    return errors


def call_references(item: dict, nodes) -> list[tuple[str, str, tuple]]:
    """(argument, node, path below `call`) of each call argument naming a node of the graph.

    A call argument written as the name of an input or layer (`mask: pad`, or a list of
    names: `initial_state: [h, c]`) takes that node's tensor; other values are constants.
    """
    call = item.get("call")
    found = []
    for argument, value in (call.items() if isinstance(call, dict) else ()):
        if isinstance(value, str) and value in nodes:
            found.append((argument, value, (argument,)))
        elif isinstance(value, list) and value and all(isinstance(v, str) and v in nodes for v in value):
            found += [(argument, v, (argument, j)) for j, v in enumerate(value)]
    return found


def _names(value) -> list[str]:
    """A name or a list of names, as written for inputs and outputs."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _late_message(source, name, feeds, names, index) -> str:
    cycle = _cycle_through(source, name, feeds, names)
    if cycle:
        return f"cycle: {' -> '.join(cycle)} (a functional model is a graph without loops)"
    return (f"{source!r} is defined after {name!r}: list the layers in the order they run "
            f"(move {source!r} above layer {index})")


def _cycle_through(start, target, feeds, names) -> list[str] | None:
    """A path of layers start -> ... -> target following what each layer reads, if any."""
    stack, seen = [(start, [target, start])], set()
    while stack:
        node, trail = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for source in feeds.get(node, []):
            if source == target:
                return trail + [target]
            if source in names:
                stack.append((source, trail + [source]))
    return None


def _unused(spec, path, inputs, items, feeds, outputs) -> list[SpecError]:
    """Inputs and layers that no output depends on: Keras drops them (an input: it refuses)."""
    needed, stack = set(), list(outputs)
    while stack:
        node = stack.pop()
        if node in needed:
            continue
        needed.add(node)
        stack += feeds.get(node, [])
    errors = []
    for name in inputs:
        if name not in needed:
            errors.append(spec.error((*path, "inputs", name), f"input {name!r} feeds no output"))
    for i, item in enumerate(items):
        name = item.get("name")
        if isinstance(name, str) and name not in needed and outputs:
            errors.append(spec.error((*path, "layers", i, "name"), f"layer {name!r} feeds no output (unused)", at_value=True))
    return errors
