#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a circle.

Nodes are the crate's top-level modules (src/<name>.rs or src/<name>/); an edge a -> b is a
`crate::b` path in a's code (comments and #[cfg(test)] modules left out; names re-exported by
src/lib.rs are resolved to the module that defines them). Prints the cycles found."""
import pathlib
import re
import sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"


def code_of(path):
    text = path.read_text()
    cut = text.find("#[cfg(test)]\nmod tests")
    if cut >= 0:
        text = text[:cut]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def module_of(path):
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


lib = code_of(src / "lib.rs")
reexports = {}
for module, names in re.findall(r"pub use (\w+)::\{?([\w, ]+)\}?;", lib):
    for name in names.split(","):
        reexports[name.strip()] = module
modules = {module_of(p) for p in src.rglob("*.rs") if p.name != "lib.rs"}

edges = {m: set() for m in modules}
for path in src.rglob("*.rs"):
    if path.name == "lib.rs":
        continue
    a = module_of(path)
    code = code_of(path)
    targets = set(re.findall(r"\bcrate::(\w+)", code))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
        targets.update(n.strip().split("::")[0] for n in group.split(","))
    for t in targets:
        b = t if t in modules else reexports.get(t)
        if b and b != a:
            edges[a].add(b)

cycles, state, stack = [], {}, []


def visit(m):
    state[m] = "open"
    stack.append(m)
    for n in sorted(edges[m]):
        if state.get(n) == "open":
            cycles.append(stack[stack.index(n):] + [n])
        elif n not in state:
            visit(n)
    stack.pop()
    state[m] = "done"


for m in sorted(modules):
    if m not in state:
        visit(m)
if cycles:
    for c in cycles:
        print("import circle in src/: " + " -> ".join(c))
    sys.exit(1)
print(f"src/: {len(modules)} modules, {sum(len(e) for e in edges.values())} imports, no circle")
