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
what `lambda epoch: <expr>` gives when torch calls it, bit for bit, save where Python would build
an int of more than 64 bits out of a power or a float, or a complex number:

- an int raised to a non-negative int is exact while the result fits in 64 bits (less than 2**64
  in absolute value, `EXACT_POW_BITS`), and every other power is `math.pow`, which raises on
  overflow and on a negative base with a fractional exponent (where Python returns a complex);
- `floor` and `ceil` of a float of 2**64 or more in absolute value, an integer already, return
  that float rather than an int of up to 1024 bits.

Limits, checked before anything is evaluated, bound the cost of compiling and evaluating: at most
1000 characters, 200 nodes and 32 levels of nesting; no int literal above 2**53 in absolute value
(write a larger number as a float, e.g. `1e20`); and a `**` whose exponent does not read the step
must have a (folded) exponent of at most 1024 in absolute value, so `9 ** 9 ** 9` is refused
rather than computed. With steps up to 2**53, an int then gets its bits from at most a hundred
factors of at most 64 bits each: the costliest expression compiles in a couple of milliseconds
and evaluates in some tens of microseconds.

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
from typing import Any, NoReturn

from .base import SpecError

MAX_SOURCE_LENGTH = 1000
MAX_NODES = 200
MAX_DEPTH = 32
CALL_COST = 0.4
"""The cost of calling an expression, in `Schedule.cost` units (one CosineAnnealingLR step)."""
NODE_COST = 0.05
"""What each node of the expression adds to CALL_COST."""
HEAVY_NODE_COST = 0.25
"""What each `*`, `**`, `floor` and `ceil` adds on top of NODE_COST: products of the step build
ints of thousands of bits (100 factors of up to 64 bits), and the others run Python-level guards."""
MAX_CONSTANT_EXPONENT = 1024
MAX_INT_LITERAL = 2**53
"""The largest int literal, in absolute value: larger numbers are written as floats."""
EXACT_POW_BITS = 64
"""An int ** int is computed exactly while its result has at most this many bits."""

_FLOAT_INT_LIMIT = 2.0**EXACT_POW_BITS


def _floor(x: float) -> float:
    # A float of 2**64 or more is an integer already. As an int it would have up to 1024 bits, and
    # a product of fifty of those costs milliseconds to divide: keep it a float, as `**` does.
    # Ints, and inf and nan (which math.floor refuses), take math.floor's path.
    if -_FLOAT_INT_LIMIT < x < _FLOAT_INT_LIMIT or type(x) is not float or x - x != 0.0:
        return math.floor(x)
    return x


def _ceil(x: float) -> float:
    if -_FLOAT_INT_LIMIT < x < _FLOAT_INT_LIMIT or type(x) is not float or x - x != 0.0:
        return math.ceil(x)
    return x


NAMES = ("epoch", "step", "pi", "e")
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    # name: (function, fewest arguments, most arguments or None for no limit)
    "floor": (_floor, 1, 1),
    "ceil": (_ceil, 1, 1),
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
    # Python's int ** int is exact and unbounded: `2 ** epoch` at epoch 2**53 would never finish,
    # and even a bounded one feeds products of huge ints. Past EXACT_POW_BITS, math.pow rounds (or
    # overflows) instead: the same value where the power is the result, and a different one only
    # where further arithmetic, exact on Python's int, rounds on the float; no schedule does that.
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        bits = base.bit_length()
        if bits <= 1:  # 0, 1 and -1 (or a bool): past 0, only the exponent's parity matters
            small: int = base ** (exponent and 2 - (exponent & 1))
            return small
        # Beyond twice the budget the result has at least (bits - 1) * exponent > EXACT_POW_BITS
        # bits: only within it is the exact power worth computing, in at most 128 bits.
        if bits * exponent <= 2 * EXACT_POW_BITS:
            exact: int = base**exponent
            if exact.bit_length() <= EXACT_POW_BITS:
                return exact
    return math.pow(base, exponent)


_ERRORS: dict[str, type[Exception]] = {
    error.__name__: error for error in (ZeroDivisionError, OverflowError, ValueError)
}


def _raise(error: str, message: str) -> NoReturn:
    # What a constant exponent that has no value turns into: it raises as that exponent would.
    raise _ERRORS[error](message)


# Evaluated code sees these names and no builtins: a second fence behind the grammar check.
_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "_pow": _pow,
    "_fpow": math.pow,
    "_raise": _raise,
    **{name: spec[0] for name, spec in FUNCTIONS.items()},
}


def _evaluate(node: ast.expr) -> Any:
    # Every node carries a location: the parser's, or one copied from the node it replaces.
    code = compile(ast.Expression(body=node), "<lr_lambda>", "eval")
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
    """A compiled `lr_lambda`: call it with the epoch (the int step) to get the float value.

    `nodes` is its size, and `cost` the estimated cost of one call in `Schedule.cost` units:
    CALL_COST, plus NODE_COST per node and HEAVY_NODE_COST more per `*`, `**`, `floor` and `ceil`,
    rounded up from measurements so as to bound rather than average (docs/performance.md).
    """

    __slots__ = ("_fn", "cost", "depends_on_step", "nodes", "source")

    def __init__(
        self, source: str, fn: Callable[[int], float], depends_on_step: bool, nodes: int, cost: float
    ) -> None:
        """Use `Expression.compile`; this only stores what it produced."""
        self.source = source
        self.depends_on_step = depends_on_step
        self.nodes = nodes
        self.cost = cost
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
        except ValueError as exc:  # a lone surrogate, or a null byte (a ValueError before 3.12)
            raise SpecError.at((), f"not a valid expression: {exc}", _shorten(source)) from None
        nodes, heavy = _check_size(tree, source)
        lowering = _Lowering(text, source)
        body, depends_on_step = lowering.lower(tree.body)
        arg = ast.copy_location(ast.arg(arg="epoch"), body)
        lam = ast.Lambda(
            args=ast.arguments(posonlyargs=[], args=[arg], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=body,
        )
        cost = CALL_COST + NODE_COST * nodes + HEAVY_NODE_COST * heavy
        expression = cls(source, _evaluate(ast.copy_location(lam, body)), depends_on_step, nodes, cost)
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


# Nodes without children: the parser shares one instance of each among all the nodes using it.
_LEAF_NODES = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def _is_heavy(node: ast.expr) -> bool:
    """Whether the node costs HEAVY_NODE_COST more to evaluate."""
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, ast.Mult | ast.Pow)
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("floor", "ceil")
    )


def _check_size(tree: ast.Expression, source: str) -> tuple[int, int]:
    """(nodes, heavy nodes) of an expression within the limits; SpecError otherwise."""
    # Iterative, so that a tree too deep for the recursive checks below is refused, not crashed on.
    nodes = depth = heavy = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, ast.expr):
            nodes += 1
            if _is_heavy(node):
                heavy += 1
            if level > depth:
                depth = level
            level += 1
        for field in node._fields:
            child = getattr(node, field, None)
            if isinstance(child, list):
                stack.extend((item, level) for item in child if isinstance(item, ast.AST))
            elif isinstance(child, ast.AST) and not isinstance(child, _LEAF_NODES):
                stack.append((child, level))
    if nodes > MAX_NODES:
        raise SpecError.at((), f"expression has {nodes} nodes; the limit is {MAX_NODES}", source)
    if depth > MAX_DEPTH:
        raise SpecError.at((), f"expression nests {depth} levels deep; the limit is {MAX_DEPTH}", source)
    return nodes, heavy


class _Lowering:
    """Checks every node against the grammar and rewrites the tree, in place, for evaluation.

    Rewrites: `step` becomes `epoch`, `pi` and `e` become constants, `**` becomes a guarded
    power, and a constant exponent becomes its value. `lower` returns the new node and whether it
    reads the step.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def error(self, node: ast.AST, message: str) -> SpecError:
        fragment = ast.get_source_segment(self.text, node) or ""
        return SpecError.at((), f"{message}: {_shorten(fragment)!r}", self.source)

    def lower(self, node: ast.expr) -> tuple[ast.expr, bool]:
        reads: bool
        if isinstance(node, ast.Constant):
            self.check_constant(node)
            return node, False
        if isinstance(node, ast.Name):
            if node.id in ("epoch", "step"):
                node.id = "epoch"
                return node, True
            if node.id in ("pi", "e"):
                return ast.copy_location(ast.Constant(getattr(math, node.id)), node), False
            raise self.error(node, f"unknown name {node.id!r}; allowed: {', '.join(NAMES)}")
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _UNARY):
                raise self.error(node, f"operator {_symbol(node.op)} is not allowed")
            node.operand, reads = self.lower(node.operand)
        elif isinstance(node, ast.BoolOp):
            node.values, reads = self.lower_all(node.values)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if not isinstance(op, _COMPARE):
                    raise self.error(node, f"comparison {_symbol(op)} is not allowed")
            (node.left, *node.comparators), reads = self.lower_all([node.left, *node.comparators])
        elif isinstance(node, ast.IfExp):
            (node.test, node.body, node.orelse), reads = self.lower_all([node.test, node.body, node.orelse])
        elif isinstance(node, ast.Call):
            return self.call(node)
        else:
            what = _CONSTRUCTS.get(type(node), f"{type(node).__name__} expression")
            raise self.error(node, f"{what} is not allowed")
        return node, reads

    def lower_all(self, nodes: list[ast.expr]) -> tuple[list[ast.expr], bool]:
        lowered = [self.lower(node) for node in nodes]
        return [new for new, _ in lowered], any(reads for _, reads in lowered)

    def check_constant(self, node: ast.Constant) -> None:
        value = node.value
        if type(value) not in (int, float):  # bool is an int subclass, and is refused too
            kind = "boolean" if isinstance(value, bool) else type(value).__name__
            raise self.error(node, f"{kind} constant is not allowed; only int and float numbers")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(node, "number is not finite")
        if isinstance(value, int) and value > MAX_INT_LITERAL:  # a literal is never negative
            try:
                hint = f"write it as a float, e.g. {float(value)!r}".replace("e+", "e")
            except OverflowError:
                hint = "even as a float it would overflow"
            raise self.error(node, f"int literal exceeds 2**53 = {MAX_INT_LITERAL} in absolute value; {hint}")

    def binary(self, node: ast.BinOp) -> tuple[ast.expr, bool]:
        node.left, left_reads = self.lower(node.left)
        node.right, right_reads = self.lower(node.right)
        reads = left_reads or right_reads
        if isinstance(node.op, ast.Pow):
            if not right_reads:
                node.right = self.fold_exponent(node, node.right)
            # A float operand rules out the exact int power: skip the guard's Python-level call.
            floats = any(
                isinstance(side, ast.Constant) and isinstance(side.value, float)
                for side in (node.left, node.right)
            )
            func = ast.copy_location(ast.Name(id="_fpow" if floats else "_pow", ctx=ast.Load()), node)
            power = ast.Call(func=func, args=[node.left, node.right], keywords=[])
            return ast.copy_location(power, node), reads
        if type(node.op) not in _BINARY:
            raise self.error(node, f"operator {_symbol(node.op)} is not allowed")
        return node, reads

    def fold_exponent(self, node: ast.BinOp, exponent: ast.expr) -> ast.expr:
        """Check a constant exponent against the limit, and replace it by what it evaluates to.

        The replacement, the value or the error it raises, is what every evaluation would compute.
        Folding evaluates each constant exponent once, so that a tower of powers, whose exponents
        are nested in one another, costs a compile per power rather than one per level and power.
        """
        value: Any
        if isinstance(exponent, ast.Constant):
            value = exponent.value
        elif (
            isinstance(exponent, ast.UnaryOp)
            and isinstance(exponent.op, ast.USub | ast.UAdd)
            and isinstance(exponent.operand, ast.Constant)
        ):
            # `x ** -0.5` and the like: as common as they are cheap to fold without a compile.
            value = exponent.operand.value
            value = -value if isinstance(exponent.op, ast.USub) else +value
        else:
            try:
                value = _evaluate(exponent)
            except (ArithmeticError, ValueError) as exc:
                # The power raises whenever it is evaluated, as Python's would: make it cheap to.
                if type(exc) not in _ERRORS.values():
                    return exponent
                args: list[ast.expr] = [ast.Constant(type(exc).__name__), ast.Constant(str(exc))]
                func = ast.Name(id="_raise", ctx=ast.Load())
                call = ast.Call(func=func, args=args, keywords=[])
                for new in (call, func, *args):
                    ast.copy_location(new, exponent)
                return call
        if not abs(value) <= MAX_CONSTANT_EXPONENT:  # also refuses nan
            if isinstance(value, float):
                shown = f"{value:.6g}"
            else:  # an int, possibly too long to print
                shown = str(value) if abs(value) < 10**15 else f"of ~2**{abs(value).bit_length()}"
            raise self.error(
                node, f"exponent {shown} exceeds the limit of {MAX_CONSTANT_EXPONENT} in absolute value"
            )
        if isinstance(exponent, ast.Constant):
            return exponent
        return ast.copy_location(ast.Constant(value), exponent)

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
        node.args, reads = self.lower_all(node.args)
        return node, reads


def _symbol(op: ast.AST) -> str:
    return repr(_OPERATOR_SYMBOLS.get(type(op), type(op).__name__))
