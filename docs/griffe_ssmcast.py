"""Griffe extension for the API pages (mkdocs.yml loads it; it is not part of the package).

1. ``ssmcast/training`` has no ``__init__.py``: Python imports it as an implicit namespace package, but Griffe does
   not load a namespace folder inside a regular package, so ``ssmcast.training.loggers`` (and the names
   ``ssmcast.tracking`` re-exports from it) would be missing. The folder's modules are visited here.
2. The docstrings are written with Sphinx roles (:class:`Name`, :func:`~pkg.name`) and ``::`` before literal
   blocks. Markdown knows neither: each role becomes an inline code span, linked to the object's API entry when
   the name resolves inside ssmcast (an *optional* cross-reference: a target that no page renders stays plain
   text and does not fail the strict build), and ``text::`` becomes ``text:``.
3. A few estimators list their parameters numpydoc-like but loosely (``a, b : text``, several names to an
   entry, continuation lines indented): such a ``Parameters`` block becomes a Markdown list, one item an entry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`(?P<body>[^`]+)`")
_LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


class SsmcastDocs(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "ssmcast":
            return
        self._load_namespace_folders(pkg, loader)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, obj, pkg)

    @staticmethod
    def _load_namespace_folders(pkg: griffe.Module, loader: griffe.GriffeLoader) -> None:
        root = Path(pkg.filepath).parent
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not (p / "__init__.py").exists()):
            files = sorted(folder.glob("*.py"))
            if not files or folder.name in pkg.members:
                continue
            namespace = griffe.Module(
                folder.name,
                filepath=[folder],
                parent=pkg,
                lines_collection=loader.lines_collection,
                modules_collection=loader.modules_collection,
            )
            pkg.set_member(folder.name, namespace)
            for path in files:
                code = path.read_text(encoding="utf-8")
                loader.lines_collection[path] = code.splitlines()
                module = griffe.visit(
                    path.stem,
                    filepath=path,
                    code=code,
                    extensions=loader.extensions,
                    parent=namespace,
                    docstring_parser=loader.docstring_parser,
                    docstring_options=loader.docstring_options,
                    lines_collection=loader.lines_collection,
                    modules_collection=loader.modules_collection,
                )
                namespace.set_member(path.stem, module)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias and member.parent is obj:
            yield from _walk(member)


def _rewrite(text: str, obj: griffe.Object, pkg: griffe.Module) -> str:
    def role(match: re.Match) -> str:
        body = match["body"].strip()
        if body.endswith(">") and " <" in body:  # :func:`title <target>`
            title, target = body[:-1].split(" <", 1)
        else:
            target = body.lstrip("~!")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        path = _resolve(target, obj, pkg)
        if path is None:
            return f"`{title}`"
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    return _LITERAL.sub(":", _ROLE.sub(role, _parameter_lists(text)))


def _parameter_lists(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() == "Parameters" and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            out[-1] = "**Parameters:**"
            out.append("")
            i += 2
            entries: list[list[str]] = []
            while i < len(lines) and lines[i].strip():
                line = lines[i]
                # an entry goes on over indented lines and, until its " : ", over lines after a trailing comma
                # (names listed over two lines) or without a " : " of their own (an entry of names only)
                named = bool(entries) and " : " in " ".join(entries[-1])
                if entries and (line[:1].isspace() or (
                        not named and (entries[-1][-1].endswith(",") or " : " not in line))):
                    entries[-1].append(line.strip())
                else:
                    entries.append([line.strip()])
                i += 1
            for entry in entries:
                item = " ".join(entry)
                names, sep, rest = item.partition(" : ")
                out.append(f"- **{names.strip()}**: {rest}" if sep else f"- {item}")
            continue
        i += 1
    return "\n".join(out)


def _resolve(target: str, obj: griffe.Object, pkg: griffe.Module) -> str | None:
    """The full path of ``target`` as seen from ``obj`` when it names an ssmcast object, else None."""
    target = target.rstrip("()")
    if target.startswith("."):
        return None
    head, _, rest = target.partition(".")
    if head == pkg.name:
        path = target
    else:
        try:
            path = obj.resolve(head)
        except griffe.NameResolutionError:
            return None
        if rest:
            path = f"{path}.{rest}"
    if not path.startswith(pkg.name + "."):
        return None
    try:
        found = pkg.modules_collection.get_member(path)
        # ssmcast.evaluation.compare is a module and, once ``__init__`` imported it, the function compare in it
        if found.is_module and found.name in found.members and not found.members[found.name].is_module:
            path = f"{path}.{found.name}"
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return path
