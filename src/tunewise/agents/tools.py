"""Tools for agents: Python callables registered BY NAME; configs only ever name them.

A config lists tool names (`tools: [calculator, retrieve]`); names are looked up here and nothing else is
done with them, so a config can never carry code. Register your own in Python before the run:

    from tunewise.agents.tools import register_tool

    @register_tool("lookup_order")
    def lookup_order(order_id: str) -> str:
        \"\"\"Status of an order by its id.\"\"\"   # the docstring is what the model reads
        return ORDERS.get(order_id, "no such order")

Parameters need type annotations (they become the tool's JSON schema). A tool that needs the task's
training data is registered with `factory=True`: it receives a `ToolContext` and returns the callable.
Built-ins: `calculator` (arithmetic parsed with `ast`, never `eval`) and `retrieve` (nearest training
examples by word overlap; the context holds the TRAINING split only, so retrieval cannot see the test set).
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewise.data import Example
from tunewise.errors import UserError

TOOL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


@dataclass(frozen=True)
class ToolContext:
    """What a tool factory may use: the training examples (never the test split) and the label set."""

    train: Sequence[Example] = ()
    labels: Sequence[str] = ()
    options: dict[str, Any] = field(default_factory=dict)


_TOOLS: dict[str, tuple[Callable[..., Any], bool]] = {}


def register_tool(name: str, *, factory: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: make `fn` available to agents as the tool `name` (factory=True: `fn(ToolContext) -> tool`)."""
    if not re.match(TOOL_NAME, name):
        raise ValueError(f"tool name '{name}': use letters, digits and underscores (a Python identifier)")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"tool '{name}' must be a callable")
        _TOOLS[name] = (fn, factory)
        return fn
    return decorate


def known_tools() -> list[str]:
    return sorted(_TOOLS)


def resolve_tools(names: Sequence[str], ctx: ToolContext) -> list[Callable[..., Any]]:
    """The callables for `names`, each with `__name__` set to its registered name; unknown: one-line error."""
    out = []
    for name in names:
        if name not in _TOOLS:
            raise UserError(f"tools: unknown tool '{name}' (known: {', '.join(known_tools())}); register it in "
                            "Python with tunewise.agents.tools.register_tool")
        fn, is_factory = _TOOLS[name]
        tool = fn(ctx) if is_factory else fn
        if getattr(tool, "__name__", None) != name:  # the model calls tools by their registered name
            tool = _renamed(tool, name)
        out.append(tool)
    return out


def _renamed(tool: Callable[..., Any], name: str) -> Callable[..., Any]:
    def named(*args: Any, **kwargs: Any) -> Any:
        return tool(*args, **kwargs)
    functools.update_wrapper(named, tool)
    named.__name__ = named.__qualname__ = name
    return named


# --- calculator: arithmetic only -------------------------------------------------------------------
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_CHARS, _MAX_POWER, _MAX_ABS = 300, 64, 1e30


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > _MAX_POWER or abs(left) > 1e6):
            raise ValueError("power too large")
        value = _BINARY[type(node.op)](left, right)
        if isinstance(value, complex) or abs(value) > _MAX_ABS:
            raise ValueError("result out of range")
        return value
    raise ValueError(f"only numbers and + - * / // % ** ( ) are allowed, not {type(node).__name__}")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with numbers, + - * / // % ** and parentheses; returns the result."""
    text = str(expression).strip().rstrip("=?. ")
    text = text.replace("×", "*").replace("÷", "/").replace("^", "**").replace("$", "")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    if not text or len(text) > _MAX_CHARS:
        return f"error: give an arithmetic expression of at most {_MAX_CHARS} characters"
    try:
        value = _evaluate(ast.parse(text, mode="eval"))
    except ZeroDivisionError:
        return "error: division by zero"
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError) as err:
        return f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(round(value, 10) if isinstance(value, float) else value)


@register_tool("calculator")
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "(12 + 3) * 4 / 5"; returns the number."""
    return calculate(expression)


# --- retrieve: nearest training examples by word overlap ---------------------------------------------
def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W_]+", text.casefold()) if len(w) > 2}


def make_retriever(train: Sequence[Example], k: int = 3, max_chars: int = 300) -> Callable[[str], str]:
    index = [(ex, _words(ex.input)) for ex in train]

    def retrieve(query: str) -> str:
        """Find solved training examples similar to the query; returns them with their answers."""
        q = _words(str(query))
        if not q or not index:
            return "no similar examples found"
        scored = sorted(index, key=lambda item: -len(q & item[1]) / math.sqrt(len(item[1]) or 1))
        lines = [f"{i}. Input: {ex.input[:max_chars]}\n   Answer: {ex.target}"
                 for i, (ex, _) in enumerate(scored[:k], 1)]
        return "Similar solved examples:\n" + "\n".join(lines)
    return retrieve


@register_tool("retrieve", factory=True)
def _retrieve_tool(ctx: ToolContext) -> Callable[[str], str]:
    return make_retriever(ctx.train, k=int(ctx.options.get("retrieve_k", 3)))
