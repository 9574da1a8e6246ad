"""A Jinja2 sandbox with bounds, for templates people edit in the console (the ticket template).

Jinja2's own sandbox keeps a template away from Python's internals, but not from using up the
process: `{% for i in range(99999) %}{% for j in range(99999) %}`, `{{ "x" * 10**9 }}`, a macro
that calls itself, or `{{ "%999999999d" % 1 }}` each stall or exhaust the worker. Here every
render runs against a budget:

- a time limit (`RENDER_SECONDS`), checked at every loop item, call, filter, attribute, operator
  and piece of output;
- an output-size limit (`MAX_OUTPUT_CHARS`), which every intermediate string or list must keep
  to as well, checked *before* the operations that multiply sizes (`*`, `**`, `+`, `~`, `%` and
  format widths, `replace`, `join`, the width and count arguments of `center`, `indent`,
  `wordwrap`, `truncate`, `batch`, `slice`...);
- a limit on the items all loops of one render go through (`MAX_LOOP_ITEMS`), which bounds
  `range` too;
- no `include`, `import`, `from` or `extends`: a template is one text, and there is no loader.

A template that goes over a limit raises `jinja2.exceptions.SecurityError` saying which limit, so
callers that catch `TemplateError` report it in words like any other template problem.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context
from jinja2.visitor import NodeTransformer

RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 100_000
MAX_LOOP_ITEMS = 10_000
# The largest width or count a filter or string method may be given (center(80), truncate(255)).
MAX_WIDTH = 1_000
# The largest whole number an operator may produce, in bits (about 1,200 decimal digits).
MAX_INT_BITS = 4_096

_LOOP_FILTER = "bounded loop items"  # not a name a template can write
_CONCAT_FILTER = "bounded concatenation"
# Filters and str methods whose whole-number arguments are widths or counts.
_WIDTH_TAKING = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "truncate", "batch"}
    | {"slice"}
)
_FORMAT_WIDTH = re.compile(r"\d{6,}")  # a width or precision of 100000 or more
_FORBIDDEN_NODES: dict[type[nodes.Node], str] = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.Extends: "extends",
}


class _Budget:
    """What one render has used so far."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.loop_items = 0
        self.output_chars = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _over(limit: str) -> SecurityError:
    return SecurityError(f"the template went over a limit: {limit}")


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise _over(f"it took longer than {budget.seconds:g} seconds")


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple | dict | set | range) else None


def _check_size(value: Any, what: str = "a value") -> Any:
    size = _sized(value)
    if size is not None and size > MAX_OUTPUT_CHARS:
        raise _over(f"{what} of more than {MAX_OUTPUT_CHARS} characters or items")
    return value


def _check_would_be(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise _over(f"{what} of more than {MAX_OUTPUT_CHARS} characters or items")


def _listed(value: Any) -> Any:
    """An iterator (from map, select...) as a list, so what it holds can be measured first."""
    if isinstance(value, Iterator):
        items = []
        for item in value:
            items.append(item)
            _check_would_be(len(items), "a sequence")
        return items
    return value


def _text_sizes(values: Iterable[Any]) -> list[int]:
    sizes = []
    for value in values:
        if isinstance(value, dict):
            sizes.extend(_text_sizes(value.values()))
        else:
            sizes.append(len(value) if isinstance(value, str) else len(str(value)[:MAX_WIDTH]))
    return sizes


def _check_format(template: Any, values: Iterable[Any], marker: str) -> None:
    """Before `template % values`, `template.format(...)` or the format filter."""
    if not isinstance(template, str):
        return
    if _FORMAT_WIDTH.search(template):
        raise _over(f"a format width or precision of {MAX_OUTPUT_CHARS} or more")
    largest = max(_text_sizes(values), default=0)
    _check_would_be(len(template) + template.count(marker) * largest, "a formatted text")


def _check_join(glue: Any, items: Any) -> None:
    if isinstance(glue, str) and _sized(items) is not None:
        total = sum(_text_sizes(items)) + len(glue) * len(items)
        _check_would_be(total, "a join")


def _check_widths(name: str, args: Iterable[Any]) -> None:
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
            raise _over(f"{name}() given {value}, more than {MAX_WIDTH}")


def _check_text_operation(
    name: str, text: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Before a filter or str method on `text` that can make its result far larger than `text`."""
    if name in _WIDTH_TAKING:
        _check_widths(name, (*args, *kwargs.values()))
    if not isinstance(text, str):
        return
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        found = text.count(old) if old else len(text) + 1
        _check_would_be(len(text) + found * len(new), "a replace")
    elif name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else int(width)
        _check_would_be(len(text) + (text.count("\n") + 1) * per_line, "an indent")
    elif name == "expandtabs":
        size = int(args[0] if args else kwargs.get("tabsize", 8))
        _check_would_be(len(text) + text.count("\t") * size, "expandtabs")
    elif name == "wordwrap":
        width = max(1, int(args[0] if args else kwargs.get("width", 79)))
        wrap = str(kwargs.get("wrapstring") or (args[2] if len(args) > 2 else "\n"))
        _check_would_be(2 * len(text) + len(wrap) * (len(text) // width + 1), "a wordwrap")


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_text_operation(name, value, args, kwargs)
    if name == "format":
        _check_format(value, (*args, *kwargs.values()), "%")
    elif name == "join":
        _check_join(args[0] if args else kwargs.get("d", ""), value)


def _check_method(name: str, receiver: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_text_operation(name, receiver, args, kwargs)
    if name in ("format", "format_map"):
        _check_format(receiver, (*args, *kwargs.values()), "{")
    elif name == "join" and args:
        _check_join(receiver, args[0])


def _check_binop(operator: str, left: Any, right: Any) -> None:
    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    sequences = (str, list, tuple)
    if operator == "*":
        if isinstance(left, sequences) and whole(right):
            _check_would_be(len(left) * max(0, right), "a repetition")
        elif isinstance(right, sequences) and whole(left):
            _check_would_be(len(right) * max(0, left), "a repetition")
        elif whole(left) and whole(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _over(f"a number of more than {MAX_INT_BITS} bits")
    elif operator == "**" and whole(left) and whole(right):
        if right > 0 and max(1, abs(left).bit_length() - 1) * right > MAX_INT_BITS:
            raise _over(f"a number of more than {MAX_INT_BITS} bits")
    elif operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        _check_would_be(len(left) + len(right), "a concatenation")
    elif operator == "%":
        _check_format(left, right if isinstance(right, tuple) else (right,), "%")


@pass_context
def _loop_items(_context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    """Every loop's items, counted against the render's budget."""
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.loop_items += 1
            if budget.loop_items > MAX_LOOP_ITEMS:
                raise _over(f"its loops went through more than {MAX_LOOP_ITEMS} items")
        _tick()
        yield item


@pass_context
def _concatenate(context: Context, parts: list[Any]) -> str:
    """`a ~ b ~ c`, as Jinja2 joins it, after checking the joined size."""
    _tick()
    _check_would_be(sum(len(str(part)) for part in parts), "a ~ concatenation")
    return markup_join(parts) if context.eval_ctx.autoescape else str_join(parts)


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_LOOP_ITEMS:
        raise _over(f"range() of more than {MAX_LOOP_ITEMS} numbers")
    return numbers


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, checked before (widths, sizes it would make) and after (the result's size)."""
    # Filters marked pass_* get the context, environment or eval context first.
    offset = 1 if hasattr(func, "jinja_pass_arg") else 0

    @functools.wraps(func)  # keeps Jinja2's pass_context/pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if len(args) > offset:
            value = _listed(args[offset]) if name == "join" else args[offset]
            args = (*args[:offset], value, *args[offset + 1 :])
            _check_filter(name, value, args[offset + 1 :], kwargs)
        return _check_size(func(*args, **kwargs), f"the {name} filter's result")

    return bounded


class _Bounder(NodeTransformer):
    """Refuses include/import/extends; routes every loop and `~` through the budget."""

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> nodes.Node:
        for kind, word in _FORBIDDEN_NODES.items():
            if isinstance(node, kind):
                raise SecurityError(f"a ticket template cannot use '{word}': it is one text")
        return super().generic_visit(node, *args, **kwargs)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, with the bounds of this module on every render of `render_bounded`.

    Immutable: `list.extend` and the like would let a list double at every call.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = _loop_items
        self.filters[_CONCAT_FILTER] = _concatenate
        # No lipsum() (it writes as much text as asked); a range() within the loop limit.
        self.globals = {
            "range": _bounded_range,
            "dict": self.globals["dict"],
            "cycler": self.globals["cycler"],
            "joiner": self.globals["joiner"],
            "namespace": self.globals["namespace"],
        }
        # Compiling costs far more than rendering (about 2 ms against 0.05 ms for the ticket
        # template), and the same few texts are rendered for every order: keep them compiled.
        self._compiled: Callable[[str], Template] = functools.lru_cache(maxsize=32)(
            self.from_string
        )

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        bounded = _Bounder().visit(tree)
        assert isinstance(bounded, nodes.Template)
        bounded.set_environment(self)
        return bounded

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _check_size(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(
        __self,  # Jinja2's own signature: the odd names leave every keyword to the callee
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _tick()
        # The sandbox hands out str.format wrapped; the method itself is under __wrapped__.
        method = getattr(__obj, "__wrapped__", __obj)
        receiver = getattr(method, "__self__", None)
        if isinstance(receiver, str):
            name = getattr(method, "__name__", "")
            if name == "join" and args:
                args = (_listed(args[0]), *args[1:])
            _check_method(name, receiver, args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def render_bounded(self, source: str, variables: dict[str, Any]) -> str:
        """Compile and render `source` within this module's bounds (SecurityError past one)."""
        budget = _Budget(RENDER_SECONDS)
        token = _BUDGET.set(budget)
        try:
            template = self._compiled(source)
            pieces: list[str] = []
            for piece in template.generate(variables):
                budget.output_chars += len(piece)
                if budget.output_chars > MAX_OUTPUT_CHARS:
                    raise _over(f"an output of more than {MAX_OUTPUT_CHARS} characters")
                _tick()
                pieces.append(piece)
            return "".join(pieces)
        finally:
            with contextlib.suppress(ValueError):
                _BUDGET.reset(token)
