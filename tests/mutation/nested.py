"""Teach mutmut 3.8 to mutate the methods of nested classes (the events' ``apply``).

mutmut puts a trampoline on every top-level function and every method of a top-level
class, and leaves the methods of a class nested in another (``StockItem.Received.apply``)
as they are: it makes their mutations, then drops them. Our events are nested classes
by design (``eventsourcing``'s shape), and their ``apply`` is the "evolve"
half of the domain, so this hook gives those methods trampolines too, the way mutmut does
for a top-level class:

- the dictionary of a nested method's mutants is declared at module level, before the
  outer class (the trampoline looks it up as a global) and filled in after it, through
  the dotted path (``StockItem.Received.<mutant>``);
- a mutant's name must not contain a dot (mutmut splits the module from the mutant on
  the last dot), so the class part of the name joins the nesting with ``__``:
  ``domain.stock_item.xǁStockItem__Receivedǁapply__mutmut_3``;
- the line spans of the generated functions are recorded, so ``mutmut show`` works.

Methods with other decorators than ``@staticmethod``/``@classmethod`` (``@property``)
stay unmutated, as mutmut leaves them everywhere.
Written against mutmut 3.8.1 (pinned in requirements-dev.txt); :func:`install` refuses
another version rather than patch internals it has not been checked against.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

NESTING = "__"
"""Joins an outer and a nested class name in a mutant's name."""
CHECKED_VERSION = "3.8.1"


def install() -> None:
    """Patch mutmut in this process (and in the processes it forks)."""
    import mutmut
    from mutmut.mutation import file_mutation as fm
    from mutmut.mutation import trampoline_templates as templates

    if mutmut.__version__ != CHECKED_VERSION:
        raise SystemExit(
            f"tests/mutation/nested.py was written against mutmut {CHECKED_VERSION}, "
            f"not {mutmut.__version__}: check its patches before changing the pin"
        )
    if getattr(fm, "_stockstream_nested", False):
        return
    fm._stockstream_nested = True  # type: ignore[attr-defined]

    original_visit_module = fm.OuterFunctionProvider.visit_Module
    original_combine = fm.combine_mutations_to_source

    def visit_module(self: Any, node: Any) -> bool:
        original_visit_module(self, node)
        # mutmut marked every node inside a nested class as belonging to that class;
        # mark the nodes of each nested method as belonging to the method instead.
        for outer in node.body:
            for _, method in _nested_methods(outer):
                method.visit(fm.OuterFunctionVisitor(self, method))
        return False

    def combine(module: Any, mutations: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        import libcst as cst

        by_function = fm.group_by_top_level_node(mutations)
        body: list[Any] = []
        extra_names: list[str] = []
        for statement in module.body:
            replaced = statement
            before: list[Any] = []
            after: list[Any] = []
            for path, method in _nested_methods(statement):
                method_mutants = by_function.get(method)
                if not method_mutants:
                    continue
                label = NESTING.join(path)
                _, nodes, _, names = fm.function_trampoline_arrangement(
                    method, method_mutants, class_name=label
                )
                mangled = templates.mangle_function_name(name=method.name.value, class_name=label)
                dictionary = f"mutants_{mangled}__mutmut"
                assignments = templates.build_mutants_dict_and_name(
                    mangled_name=mangled + "__mutmut", mutants=list(names),
                    mutants_dict_name=dictionary, class_name=".".join(path),
                )
                # Unannotated, unlike mutmut's own: it may land before mutmut's imports.
                before.extend(cst.parse_module(f"{dictionary} = {{}}  # type: ignore\n").body)
                after.extend(cst.parse_module(assignments).body)
                replaced = _replace_method(replaced, path[1:], method, nodes)
                extra_names.extend(names)
            body.extend(before)
            body.append(replaced)
            body.extend(after)
        result = original_combine(module.with_changes(body=body), mutations, *args, **kwargs)
        if not extra_names:
            return result
        spans = dict(result.line_span_by_function_name)
        spans.update(_spans_of_nested_functions(result.code))
        return fm.MutatedFile(
            code=result.code,
            mutant_names=[*result.mutant_names, *extra_names],
            line_span_by_function_name=spans,
            hash_by_function_name=result.hash_by_function_name,
        )

    fm.OuterFunctionProvider.visit_Module = visit_module  # type: ignore[method-assign]
    fm.combine_mutations_to_source = combine


def _nested_methods(
    statement: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(class path, method) of every method of a class nested in ``statement`` that mutmut
    would mutate in a top-level class."""
    import libcst as cst

    if not isinstance(statement, cst.ClassDef) or not isinstance(statement.body, cst.IndentedBlock):
        return
    here = (*path, statement.name.value)
    for child in statement.body.body:
        if len(here) > 1 and isinstance(child, cst.FunctionDef) and _plain(child):
            yield here, child
        elif isinstance(child, cst.ClassDef):
            yield from _nested_methods(child, here)


def _plain(method: Any) -> bool:
    """Undecorated, or a static or class method: what mutmut mutates in a top-level class."""
    import libcst as cst

    return not method.decorators or (
        len(method.decorators) == 1
        and isinstance(method.decorators[0].decorator, cst.Name)
        and method.decorators[0].decorator.value in ("staticmethod", "classmethod")
    )


def _replace_method(cls: Any, inner_path: Sequence[str], method: Any, nodes: Sequence[Any]) -> Any:
    """``cls`` with ``method`` of the class at ``inner_path`` replaced by ``nodes``."""
    import libcst as cst

    children: list[Any] = []
    for child in cls.body.body:
        if inner_path and isinstance(child, cst.ClassDef) and child.name.value == inner_path[0]:
            children.append(_replace_method(child, inner_path[1:], method, nodes))
        elif not inner_path and child is method:
            children.extend(nodes)
        else:
            children.append(child)
    return cls.with_changes(body=cls.body.with_changes(body=children))


def _spans_of_nested_functions(code: str) -> dict[str, Any]:
    """The line spans of the generated functions inside nested classes."""
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider
    from mutmut.mutation.data import LineSpan
    from mutmut.utils.format_utils import is_mutated_method_name

    spans: dict[str, Any] = {}

    class Collector(cst.CSTVisitor):
        METADATA_DEPENDENCIES = (PositionProvider,)

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            name = node.name.value
            if is_mutated_method_name(name) and name.startswith("xǁ") \
                    and NESTING in name.split("ǁ")[1]:
                position = self.get_metadata(PositionProvider, node)
                spans[name] = LineSpan(position.start.line, position.end.line)
            return False

    MetadataWrapper(cst.parse_module(code)).visit(Collector())
    return spans
