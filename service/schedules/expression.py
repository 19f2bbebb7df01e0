"""The `lr_lambda` language of torch's LambdaLR and MultiplicativeLR specs.

A spec gives the LR multiplier as the body of a Python lambda of the step. lrtower checks that
the source stays inside this small subset of Python, then compiles it once into a plain
function::

    expr   := expr "if" expr "else" expr
            | expr ("or" | "and") expr  |  "not" expr
            | expr (("<" | "<=" | ">" | ">=" | "==" | "!=") expr)+
            | expr ("+" | "-" | "*" | "/" | "//" | "%" | "**") expr  |  ("+" | "-") expr
            | FUNC "(" expr ("," expr)* ")"  |  NAME  |  NUMBER  |  "(" expr ")"
    NAME   := "epoch" | "step"          the step, an int (the two names are the same)
            | "pi" | "e"                 math.pi, math.e
    FUNC   := floor | ceil | sqrt | exp | cos | sin | tanh | abs    one argument
            | log                                                    log(x) or log(x, base)
            | min | max                                              two or more arguments
    NUMBER := a finite int or float literal (no bool, string, complex or None)

Precedence, associativity and values are Python's: `epoch` is the int step, ints stay exact
under + - * // %, and the functions are `math`'s and the builtins. An expression therefore gives
what `lambda epoch: <expr>` gives when torch calls it, bit for bit, save for `**`, which never
builds an int of more than 4096 bits nor a complex number: an int raised to a non-negative int
is exact while the result fits in 4096 bits, and every other power is `math.pow`, which raises on
overflow and on a negative base with a fractional exponent (where Python returns a complex).

Limits, checked before anything is evaluated, bound the cost of compiling and evaluating: at most
1000 characters, 200 nodes and 32 levels of nesting, and a `**` whose exponent does not read the
step must have a (folded) exponent of at most 1024 in absolute value, so `9 ** 9 ** 9` is refused
rather than computed.

>>> decay = Expression.compile("0.5 ** floor((1 + epoch) / 10)")
>>> [(step, decay(step)) for step in (0, 8, 9, 19, 29)]
[(0, 1.0), (8, 1.0), (9, 0.5), (19, 0.25), (29, 0.125)]
>>> Expression.compile("1 / sqrt(max(step, 1))")(100)
0.1
>>> Expression.compile("log(epoch)")(0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lrtower_server.schedules.expression.ExpressionError: math domain error (...) at epoch=0
>>> Expression.compile("epoch.real")
Traceback (most recent call last):
...
lrtower_server.schedules.base.SpecError: <spec>: attribute access is not allowed: 'epoch.real'
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

from .base import SpecError

MAX_SOURCE_LENGTH = 1000
MAX_NODES = 200
MAX_DEPTH = 32
MAX_CONSTANT_EXPONENT = 1024
EXACT_POW_BITS = 4096
"""An int ** int is computed exactly while its result has at most this many bits."""

NAMES = ("epoch", "step", "pi", "e")
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    # name: (function, fewest arguments, most arguments or None for no limit)
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (math.log, 1, 2),
    "cos": (math.cos, 1, 1),
    "sin": (math.sin, 1, 1),
    "tanh": (math.tanh, 1, 1),
    "min": (min, 2, None),
    "max": (max, 2, None),
    "abs": (abs, 1, 1),
}

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}
_UNARY = (ast.UAdd, ast.USub, ast.Not)
_COMPARE = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_OPERATOR_SYMBOLS = {
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripting",
    ast.Lambda: "lambda",
    ast.NamedExpr: "assignment (:=)",
    ast.JoinedStr: "f-string",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "generator expression",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Set: "set",
    ast.Dict: "dict",
    ast.Starred: "unpacking (*)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slice",
}


def _pow(base: float, exponent: float) -> float:
    # Python's int ** int is exact and unbounded: `2 ** epoch` at epoch 2**53 would never finish.
    # Past EXACT_POW_BITS, math.pow overflows instead; such a power could only come back into
    # float range through // or %, which no schedule does.
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent >= 0
        and base.bit_length() * exponent <= EXACT_POW_BITS
    ):
        exact: int = base**exponent
        return exact
    return math.pow(base, exponent)


# Evaluated code sees these names and no builtins: a second fence behind the grammar check.
_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "_pow": _pow,
    "_fpow": math.pow,
    **{name: spec[0] for name, spec in FUNCTIONS.items()},
}


def _evaluate(node: ast.expr) -> Any:
    code = compile(ast.fix_missing_locations(ast.Expression(body=node)), "<lr_lambda>", "eval")
    return eval(code, _GLOBALS)


class ExpressionError(ValueError):
    """An expression has no finite value at this epoch (division by zero, log(0), overflow...).

    `epoch` and `reason` let a caller restate it, e.g. as a `DomainError(epoch, reason)`.
    """

    def __init__(self, epoch: int, reason: str) -> None:
        self.epoch = epoch
        self.reason = reason
        super().__init__(f"{reason} at epoch={epoch}")


class Expression:
    """A compiled `lr_lambda`: call it with the epoch (the int step) to get the float value."""

    __slots__ = ("_fn", "depends_on_step", "source")

    def __init__(self, source: str, fn: Callable[[int], float], depends_on_step: bool) -> None:
        """Use `Expression.compile`; this only stores what it produced."""
        self.source = source
        self.depends_on_step = depends_on_step
        self._fn = fn

    @classmethod
    def compile(cls, source: str) -> Expression:
        """Check `source` against the grammar and the limits, then compile it.

        Raises SpecError, located at `()`, quoting the offending fragment.
        """
        if len(source) > MAX_SOURCE_LENGTH:
            raise SpecError.at(
                (),
                f"expression is {len(source)} characters long; the limit is {MAX_SOURCE_LENGTH}",
                _shorten(source),
            )
        text = source.strip()  # leading whitespace would be an "unexpected indent" to the parser
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise SpecError.at((), f"not a valid expression: {exc.msg}: {_shorten(text)!r}", source) from None
        except (RecursionError, MemoryError):
            raise SpecError.at((), "expression is nested too deeply to parse", _shorten(source)) from None
        _check_size(tree, source)
        lowering = _Lowering(text, source)
        body, depends_on_step = lowering.lower(tree.body)
        lam = ast.Lambda(
            args=ast.arguments(
                posonlyargs=[], args=[ast.arg(arg="epoch")], kwonlyargs=[], kw_defaults=[], defaults=[]
            ),
            body=body,
        )
        expression = cls(source, _evaluate(ast.copy_location(lam, body)), depends_on_step)
        if not depends_on_step:
            # A constant that fails fails at every step: report it now, as a bad spec.
            try:
                expression(0)
            except ExpressionError as exc:
                raise SpecError.at((), f"expression has no value: {exc.reason}", source) from None
        return expression

    def __call__(self, epoch: int) -> float:
        try:
            value = self._fn(epoch)
            if type(value) is not float:  # an int or a bool from the expression
                value = float(value)
        except ZeroDivisionError:
            raise ExpressionError(epoch, "division by zero") from None
        except OverflowError as exc:
            raise ExpressionError(epoch, f"overflow ({exc})") from None
        except ValueError as exc:
            reason = str(exc)
            if reason == "math domain error":
                reason += " (e.g. log(0), sqrt(-1), or a negative number to a fractional power)"
            raise ExpressionError(epoch, reason) from None
        if value - value != 0.0:  # inf and nan, in one comparison
            raise ExpressionError(epoch, f"the value is {value}, not a finite number")
        return value

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_size(tree: ast.Expression, source: str) -> None:
    # Iterative, so that a tree too deep for the recursive checks below is refused, not crashed on.
    nodes = depth = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, ast.expr):
            nodes += 1
            depth = max(depth, level)
            level += 1
        stack.extend((child, level) for child in ast.iter_child_nodes(node))
    if nodes > MAX_NODES:
        raise SpecError.at((), f"expression has {nodes} nodes; the limit is {MAX_NODES}", source)
    if depth > MAX_DEPTH:
        raise SpecError.at((), f"expression nests {depth} levels deep; the limit is {MAX_DEPTH}", source)


class _Lowering:
    """Checks every node against the grammar and rewrites the tree for evaluation.

    Rewrites: `step` becomes `epoch`, `pi` and `e` become constants, `**` becomes a guarded
    power. `lower` returns the new node and whether it reads the step.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def error(self, node: ast.AST, message: str) -> SpecError:
        fragment = ast.get_source_segment(self.text, node) or ""
        return SpecError.at((), f"{message}: {_shorten(fragment)!r}", self.source)

    def lower(self, node: ast.expr) -> tuple[ast.expr, bool]:
        new: ast.expr
        if isinstance(node, ast.Constant):
            return self.constant(node), False
        if isinstance(node, ast.Name):
            if node.id in ("epoch", "step"):
                return ast.copy_location(ast.Name(id="epoch", ctx=ast.Load()), node), True
            if node.id in ("pi", "e"):
                return ast.copy_location(ast.Constant(getattr(math, node.id)), node), False
            raise self.error(node, f"unknown name {node.id!r}; allowed: {', '.join(NAMES)}")
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _UNARY):
                raise self.error(node, f"operator {_symbol(node.op)} is not allowed")
            operand, reads = self.lower(node.operand)
            new = ast.UnaryOp(op=node.op, operand=operand)
        elif isinstance(node, ast.BoolOp):
            values, reads = self.lower_all(node.values)
            new = ast.BoolOp(op=node.op, values=values)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if not isinstance(op, _COMPARE):
                    raise self.error(node, f"comparison {_symbol(op)} is not allowed")
            (left, *comparators), reads = self.lower_all([node.left, *node.comparators])
            new = ast.Compare(left=left, ops=node.ops, comparators=comparators)
        elif isinstance(node, ast.IfExp):
            (test, body, orelse), reads = self.lower_all([node.test, node.body, node.orelse])
            new = ast.IfExp(test=test, body=body, orelse=orelse)
        elif isinstance(node, ast.Call):
            return self.call(node)
        else:
            what = _CONSTRUCTS.get(type(node), f"{type(node).__name__} expression")
            raise self.error(node, f"{what} is not allowed")
        return ast.copy_location(new, node), reads

    def lower_all(self, nodes: list[ast.expr]) -> tuple[list[ast.expr], bool]:
        lowered = [self.lower(node) for node in nodes]
        return [new for new, _ in lowered], any(reads for _, reads in lowered)

    def constant(self, node: ast.Constant) -> ast.Constant:
        value = node.value
        if type(value) not in (int, float):  # bool is an int subclass, and is refused too
            kind = "boolean" if isinstance(value, bool) else type(value).__name__
            raise self.error(node, f"{kind} constant is not allowed; only int and float numbers")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(node, "number is not finite")
        return node

    def binary(self, node: ast.BinOp) -> tuple[ast.expr, bool]:
        left, left_reads = self.lower(node.left)
        right, right_reads = self.lower(node.right)
        new: ast.expr
        if isinstance(node.op, ast.Pow):
            if not right_reads:
                self.check_exponent(node, right)
            # A float operand rules out the exact int power: skip the guard's Python-level call.
            floats = any(
                isinstance(side, ast.Constant) and isinstance(side.value, float) for side in (left, right)
            )
            func = ast.Name(id="_fpow" if floats else "_pow", ctx=ast.Load())
            new = ast.Call(func=func, args=[left, right], keywords=[])
        elif type(node.op) in _BINARY:
            new = ast.BinOp(left=left, op=node.op, right=right)
        else:
            raise self.error(node, f"operator {_symbol(node.op)} is not allowed")
        return ast.copy_location(new, node), left_reads or right_reads

    def check_exponent(self, node: ast.BinOp, exponent: ast.expr) -> None:
        try:
            value = _evaluate(exponent)
        except (ArithmeticError, ValueError):
            return  # the power raises whenever it is evaluated, as Python's would: not a cost issue
        if not abs(value) <= MAX_CONSTANT_EXPONENT:  # also refuses nan
            if isinstance(value, float):
                shown = f"{value:.6g}"
            else:  # an int, possibly too long to print
                shown = str(value) if abs(value) < 10**15 else f"of ~2**{abs(value).bit_length()}"
            raise self.error(
                node, f"exponent {shown} exceeds the limit of {MAX_CONSTANT_EXPONENT} in absolute value"
            )

    def call(self, node: ast.Call) -> tuple[ast.expr, bool]:
        if not isinstance(node.func, ast.Name):
            raise self.error(node, f"only these functions may be called: {', '.join(FUNCTIONS)}")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.error(node, f"function {name!r} is not allowed; allowed: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise self.error(node, "keyword arguments are not allowed")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.error(node, "unpacking (*) is not allowed")
        _, fewest, most = FUNCTIONS[name]
        given = len(node.args)
        if given < fewest or (most is not None and given > most):
            expected = (
                "1 argument"
                if most == 1
                else f"{fewest} or {most} arguments"
                if most
                else f"at least {fewest} arguments"
            )
            raise self.error(node, f"{name}() takes {expected}, not {given}")
        args, reads = self.lower_all(node.args)
        func = ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node.func)
        return ast.copy_location(ast.Call(func=func, args=args, keywords=[]), node), reads


def _symbol(op: ast.AST) -> str:
    return repr(_OPERATOR_SYMBOLS.get(type(op), type(op).__name__))
