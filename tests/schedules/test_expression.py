"""The `lr_lambda` expression language: parity with Python's own lambdas, and its defenses."""

from __future__ import annotations

import ast
import contextlib
import doctest
import math
import timeit
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lrtower_server.schedules import expression
from lrtower_server.schedules.base import SpecError
from lrtower_server.schedules.expression import Expression, ExpressionError

MATH: dict[str, Any] = {
    "floor": math.floor,
    "ceil": math.ceil,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "cos": math.cos,
    "sin": math.sin,
    "tanh": math.tanh,
    "min": min,
    "max": max,
    "abs": abs,
    "pi": math.pi,
    "e": math.e,
}

STEPS = [*range(0, 3000), *range(3000, 20000, 37), 10**6, 10**9 + 7, 2**31, 2**53 - 1, 2**53]


def python_lambda(source: str) -> Callable[[int], Any]:
    """What a torch user would write: `lambda epoch: <source>`, with the math names in scope."""
    fn: Callable[[int], Any] = eval(f"lambda epoch: {source}", dict(MATH))
    return fn


class BeyondExactInts(Exception):
    """Python floors a float of 2**64 or more into an int, where the language keeps the float."""


def _checked(rounding: Callable[[float], int]) -> Callable[[float], int]:
    def checked(x: float) -> int:
        if isinstance(x, float) and math.isfinite(x) and abs(x) >= 2.0**64:
            raise BeyondExactInts
        return rounding(x)

    return checked


# Raises BeyondExactInts where the language documents that it departs from Python.
CHECKED_MATH = {**MATH, "floor": _checked(math.floor), "ceil": _checked(math.ceil)}


def python_value(source: str, epoch: int) -> float | None:
    """Python's own value of `source` at `epoch`, or None where it has no finite real value."""
    try:
        value = eval(source, {"__builtins__": {}, **CHECKED_MATH, "epoch": epoch, "step": epoch})
        if isinstance(value, complex):
            return None
        value = float(value)
    except (ArithmeticError, ValueError, TypeError):
        return None
    return value if math.isfinite(value) else None


def same_float(a: float, b: float) -> bool:
    return type(a) is float and a.hex() == b.hex()


# --- parity with the same Python lambda ---------------------------------------------------------

FORMULAS = [
    # the documented examples
    "0.5 ** floor((1 + epoch) / 10)",
    "epoch / 500 if epoch < 500 else 0.5 * (1 + cos(pi * (epoch - 500) / 9500))",
    "0.95 ** epoch",
    "1 / sqrt(max(epoch, 1))",
    "min(1.0, (epoch + 1) / 100)",
    # seed schedules
    "0.1 ** (epoch // 30)",  # step decay
    "0.97 ** epoch",  # exponential decay
    "exp(-0.1 * epoch)",  # natural exponential decay
    "0.96 ** floor(epoch / 100)",  # staircase exponential decay
    "(1 - min(epoch, 10000) / 10000) ** 2",  # polynomial decay
    "(1 - min(epoch, 10000) / 10000) ** 0.9 * 0.99 + 0.01",  # polynomial decay to an end value
    "1 / sqrt(max(epoch, 1))",  # inverse square root
    "min(1.0, (epoch + 1) / 100) * 0.1 ** ((epoch >= 3000) + (epoch >= 6000))",  # warmup + multistep
    "(epoch + 1) / 100 if epoch < 100 else 0.5 * (1 + cos(pi * (epoch - 100) / 9900))",  # warmup + cosine
    "min((epoch + 1) ** -0.5, (epoch + 1) * 4000 ** -1.5)",  # the transformer's noam schedule
    "max(0.0, 1 - epoch / 5000) if epoch % 1000 else 1.0 + tanh(epoch / 1e4)",
    "2 ** -(epoch // 1000) * (1 + sin(epoch) / 10)",
    "log(epoch + 2, 2) ** -1 + abs(ceil(epoch / 3) - epoch / 3) * e",
]


@pytest.mark.parametrize("source", FORMULAS)
def test_matches_the_python_lambda_bit_for_bit(source: str) -> None:
    compiled = Expression.compile(source)
    reference = python_lambda(source)
    mismatches = [s for s in STEPS if not same_float(compiled(s), float(reference(s)))]
    assert mismatches == []


def test_steps_up_to_2_pow_53_are_cheap_and_exact() -> None:
    # Float arithmetic would round epoch * 3 before the division; Python's ints do not.
    epoch = 2**53 - 14
    assert Expression.compile("epoch * 3 // 7")(epoch) == float(epoch * 3 // 7) != float(epoch * 3.0 // 7)
    assert Expression.compile("0.5 ** epoch")(2**53) == 0.0
    assert Expression.compile("epoch % 1000 + 1")(2**53 - 1) == 992.0


def test_int_powers_stay_exact_within_64_bits() -> None:
    assert expression.EXACT_POW_BITS == 64
    assert Expression.compile("2 ** 63 // 2 ** 50 + 3 ** 40 % 7")(0) == 8192.0 + 3**40 % 7
    assert Expression.compile("(epoch + 3) ** 2 % 1000")(10**9) == float((10**9 + 3) ** 2 % 1000)
    assert Expression.compile("epoch ** 2 % 1000 + (-epoch) ** 3 % 1000")(2**21 - 1) == float(
        (2**21 - 1) ** 2 % 1000 + (-(2**21 - 1)) ** 3 % 1000
    )
    assert Expression.compile("epoch ** 2 % 1000")(2**32 - 1) == float((2**32 - 1) ** 2 % 1000)
    # 0, 1 and -1 to any power, however large, are exact: no math.pow, no squaring loop.
    assert Expression.compile("(-1) ** epoch * 3 + 0 ** epoch + 1 ** epoch")(2**53 - 1) == -2.0
    assert Expression.compile("(-1) ** epoch + 0 ** (epoch - 5) + (epoch > 1) ** epoch")(5) == 1.0


def test_int_powers_past_64_bits_are_floats() -> None:
    # Past 64 bits, an int power is math.pow's float: where it is the result, the same value,
    # rounded once, as Python's int converted at the end...
    assert Expression.compile("3 ** 41")(0) == float(3**41) == math.pow(3, 41)
    assert Expression.compile("2 ** 64 - 1")(0) == float(2**64 - 1)
    # ...but further operations act on that float, where Python's act on the exact int.
    assert Expression.compile("epoch ** 3 / 7")(10**9 + 1) == math.pow(10**9 + 1, 3) / 7
    assert Expression.compile("epoch ** 3 % 1000")(10**9) == math.pow(10**9, 3) % 1000 == 72.0
    assert (10**9) ** 3 % 1000 == 0
    # Overflow is an error, not an int of thousands of bits.
    with pytest.raises(ExpressionError, match="overflow"):
        Expression.compile("2 ** epoch")(1024)


def test_floor_and_ceil_keep_huge_floats_as_floats() -> None:
    # A float of 2**64 or more is an integer already: floor and ceil return it as it is, where
    # Python would make it an int of up to 1024 bits. Below 2**64, they give Python's ints.
    big = 2.0**64
    for rounding in (expression._floor, expression._ceil):
        assert rounding(big) == big and type(rounding(big)) is float
        assert rounding(-1e300) == -1e300 and type(rounding(-1e300)) is float
        assert rounding(big - 2048) == 2**64 - 2048 and type(rounding(big - 2048)) is int
        assert rounding(2**100) == 2**100 and type(rounding(2**100)) is int  # ints pass through
        assert type(rounding(True)) is int
    assert Expression.compile("floor(1e19) % 7 + ceil(-1e19) % 7")(0) == float(10**19 % 7 + -(10**19) % 7)
    assert Expression.compile("floor(epoch * 1e300) * 2 // 3")(1) == 1e300 * 2 // 3
    assert Expression.compile("floor(2.5 * epoch) + ceil(-0.5 - epoch)")(2**53) == float(
        math.floor(2.5 * 2**53) + math.ceil(-0.5 - 2**53)
    )


def test_int_literals_up_to_2_pow_53_are_accepted() -> None:
    assert Expression.compile("9007199254740992 - epoch")(1) == 9007199254740991.0
    assert Expression.compile("-9007199254740992 + epoch * 2")(2**52) == 0.0
    assert Expression.compile("0x20000000000000 + 1e20")(0) == 2**53 + 1e20


def test_step_is_an_alias_of_epoch_and_pi_e_are_math_constants() -> None:
    assert Expression.compile("step * 2 + epoch")(21) == 63.0
    assert Expression.compile("pi")(0) == math.pi
    assert Expression.compile("e")(0) == math.e
    assert Expression.compile("1e-3 * epoch")(2000) == 2.0  # a float literal, not the name `e`


def test_depends_on_step() -> None:
    assert Expression.compile("0.5 * pi + max(1, 2)").depends_on_step is False
    assert Expression.compile("0.5 ** floor(step / 10)").depends_on_step is True
    assert Expression.compile("1 if 0 else epoch").depends_on_step is True


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("1 if 10 <= epoch < 20 else 0", {9: 0.0, 10: 1.0, 19: 1.0, 20: 0.0}),
        ("epoch > 5 and 0.5 or 2", {5: 2.0, 6: 0.5}),
        ("not epoch", {0: 1.0, 3: 0.0}),
        ("(epoch >= 3) + (epoch >= 6)", {0: 0.0, 3: 1.0, 7: 2.0}),
        ("epoch == 4 != 5", {4: 1.0, 5: 0.0}),
        ("-epoch % 7 + +1", {1: 7.0, 7: 1.0}),
        ("(epoch - 10) // 3", {0: -4.0, 12: 0.0}),
        ("log(8, 2) + floor(-0.5) + ceil(0.5)", {0: 3.0}),
    ],
)
def test_operators_follow_python(source: str, values: dict[int, float]) -> None:
    compiled = Expression.compile(source)
    assert {s: compiled(s) for s in values} == values
    assert all(type(compiled(s)) is float for s in values)


def test_source_is_kept_and_surrounding_whitespace_is_accepted() -> None:
    compiled = Expression.compile("  0.5 * epoch\n")
    assert compiled.source == "  0.5 * epoch\n"
    assert compiled(4) == 2.0
    assert repr(compiled) == "Expression('  0.5 * epoch\\n')"


def test_module_doctest_passes() -> None:
    result = doctest.testmod(expression)
    assert result.attempted >= 4
    assert result.failed == 0


# --- random whitelisted expressions against Python's eval ---------------------------------------

LEAVES = st.sampled_from(
    ["epoch", "step", "pi", "e", "0", "1", "2", "3", "7", "10", "100", "0.5", "0.1", "1.5", "2.5", "1e-3"]
)
# Powers only of leaves, and no int power past 64 bits: Python's reference would build ints of
# up to millions of bits, where the language rounds to a float. Negative bases get int exponents
# only: Python would compute a complex number where the language raises.
POWERS = st.one_of(
    st.builds(
        "({} ** {})".format,
        st.sampled_from(["(epoch % 1000)", "0", "2", "3", "10", "0.5", "1.5", "pi"]),
        st.sampled_from(["0", "1", "2", "3", "6", "-1", "-2", "0.5", "1.5", "-0.5", "(1 / 3)"]),
    ),
    st.builds(
        "(epoch ** {})".format, st.sampled_from(["0", "1", "-1", "-2", "0.5", "1.5", "-0.5", "(1 / 3)"])
    ),
    st.builds("({} ** {})".format, st.sampled_from(["(-2)", "(-0.5)"]), st.sampled_from(["0", "3", "-2"])),
    st.builds("({} ** epoch)".format, st.sampled_from(["0.5", "0.9", "1.01", "1.5", "(-0.5)", "e"])),
)


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def joined(fmt: str, sep: str, low: int, high: int) -> st.SearchStrategy[str]:
        return st.lists(children, min_size=low, max_size=high).map(lambda xs: fmt.format(sep.join(xs)))

    return st.one_of(
        st.builds("({} {} {})".format, children, st.sampled_from(["+", "-", "*", "/", "//", "%"]), children),
        st.builds("({}{})".format, st.sampled_from(["-", "+", "not "]), children),
        st.builds(
            "({} {} {})".format, children, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), children
        ),
        joined("({})", " < ", 3, 3),
        joined("({})", " and ", 2, 3),
        joined("({})", " or ", 2, 3),
        st.builds("({} if {} else {})".format, children, children, children),
        st.builds(
            "{}({})".format,
            st.sampled_from(["floor", "ceil", "sqrt", "exp", "log", "cos", "sin", "tanh", "abs"]),
            children,
        ),
        joined("log({})", ", ", 2, 2),
        joined("min({})", ", ", 2, 3),
        joined("max({})", ", ", 2, 3),
    )


EXPRESSIONS = st.recursive(LEAVES | POWERS, _extend, max_leaves=10)
EPOCHS = st.one_of(st.integers(0, 3000), st.integers(0, 2**53))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=EXPRESSIONS, epochs=st.lists(EPOCHS, min_size=1, max_size=4))
def test_random_expressions_match_python_eval(source: str, epochs: list[int]) -> None:
    expected: dict[int, float | None] = {}
    for epoch in epochs:
        with contextlib.suppress(BeyondExactInts):  # a documented departure: nothing to compare
            expected[epoch] = python_value(source, epoch)
    try:
        compiled = Expression.compile(source)
    except SpecError as exc:
        if "no value" in str(exc):  # a constant that fails: it fails for Python at every epoch
            assert all(value is None for value in expected.values())
            return
        assert "limit" in str(exc)
        assume(False)
        return
    for epoch, value in expected.items():
        if value is None:
            with pytest.raises(ExpressionError):
                compiled(epoch)
        else:
            got = compiled(epoch)
            assert same_float(got, value), (source, epoch, got, value)


# --- hostile input -----------------------------------------------------------------------------


def _balanced(leaves: int, leaf: str = "epoch", op: str = "+") -> str:
    if leaves == 1:
        return leaf
    return f"({_balanced(leaves // 2, leaf, op)}{op}{_balanced(leaves - leaves // 2, leaf, op)})"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os')", "function '__import__' is not allowed; allowed: floor, ceil"),
        ("().__class__", "attribute access is not allowed: '().__class__'"),
        ("epoch.real", "attribute access is not allowed: 'epoch.real'"),
        ("[1][0]", "subscripting is not allowed: '[1][0]'"),
        ("(1, 2)", "tuple is not allowed"),
        ("{}", "dict is not allowed"),
        ("{1: 2, **epoch}", "dict is not allowed"),
        ("lambda *, a=1, b: 1", "lambda is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in epoch]", "comprehension is not allowed"),
        ("(epoch for epoch in 1)", "generator expression is not allowed"),
        ("(x := 1)", "assignment (:=) is not allowed: 'x := 1'"),
        ("f'{1}'", "f-string is not allowed"),
        ("open('x')", "function 'open' is not allowed"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("(1)(2)", "only these functions may be called"),
        ("x", "unknown name 'x'; allowed: epoch, step, pi, e: 'x'"),
        ("epoch + math", "unknown name 'math'"),
        ("True", "boolean constant is not allowed"),
        ("None", "NoneType constant is not allowed"),
        ("'a'", "str constant is not allowed"),
        ("b'a'", "bytes constant is not allowed"),
        ("2j", "complex constant is not allowed"),
        ("1e999 * epoch", "number is not finite: '1e999'"),
        ("~epoch", "operator '~' is not allowed"),
        ("epoch << 2", "operator '<<' is not allowed"),
        ("epoch @ epoch", "operator '@' is not allowed"),
        ("epoch in 1", "comparison 'in' is not allowed"),
        ("epoch is not 1", "comparison 'is not' is not allowed"),
        ("min(epoch)", "min() takes at least 2 arguments, not 1: 'min(epoch)'"),
        ("floor(epoch, 2)", "floor() takes 1 argument, not 2"),
        ("log(epoch, 2, 3)", "log() takes 1 or 2 arguments, not 3"),
        ("exp()", "exp() takes 1 argument, not 0"),
        ("floor(x=1)", "keyword arguments are not allowed: 'floor(x=1)'"),
        ("max(*epoch)", "unpacking (*) is not allowed"),
        ("9**9**9", "exponent 387420489 exceeds the limit of 1024 in absolute value: '9**9**9'"),
        ("2**10000", "exponent 10000 exceeds the limit"),
        ("epoch ** -1025", "exponent -1025 exceeds the limit"),
        ("0.5 ** (3 * 1000.0)", "exponent 3000 exceeds the limit"),
        ("epoch ** (2 ** 10 ** 3)", "exponent 1.07151e+301 exceeds the limit"),
        ("epoch ** (2 ** 53 * 2 ** 53)", "exponent of ~2**107 exceeds the limit"),
        (
            "epoch * 100000000000000000000",
            "int literal exceeds 2**53 = 9007199254740992 in absolute value; write it as a float, "
            "e.g. 1e20: '100000000000000000000'",
        ),
        (
            "-9007199254740993 * epoch",
            "int literal exceeds 2**53 = 9007199254740992 in absolute value; write it as a float, "
            "e.g. 9007199254740992.0: '9007199254740993'",
        ),
        ("0x20000000000001 + epoch", "int literal exceeds 2**53 = 9007199254740992 in absolute value"),
        ("12345678901234567890 * epoch", "e.g. 1.2345678901234567e19: '12345678901234567890'"),
        ("1" + "0" * 400, "int literal exceeds 2**53 = 9007199254740992 in absolute value; even as a float"),
        # 40 copies of 10**1024 once made an int of 136,080 bits; now each copy overflows.
        (_balanced(40, "10**1024", "*") + " % 7", "expression has no value: overflow (math range error)"),
        ("(" * 10_000 + "epoch" + ")" * 10_000, "expression is 20005 characters long; the limit is 1000"),
        ("1+" * 100_000, "expression is 200000 characters long"),
        ("1" * 2**20, "expression is 1048576 characters long"),
        ("(" * 400 + "epoch" + ")" * 400, "not a valid expression: too many nested parentheses"),
        ("-" * 100 + "epoch", "expression nests 101 levels deep; the limit is 32"),
        ("-" * 900 + "epoch", "expression has 901 nodes; the limit is 200"),
        (_balanced(128, "e"), "expression has 255 nodes; the limit is 200"),
        ("1 +", "not a valid expression: invalid syntax: '1 +'"),
        ("", "not a valid expression"),
        ("epoch\x00", "null bytes"),
        ("epoch = 1", "not a valid expression"),
        ("1 / 0", "expression has no value: division by zero"),
        ("log(0)", "expression has no value: math domain error"),
    ],
)
def test_hostile_and_invalid_sources_are_refused(source: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        Expression.compile(source)
    [error] = caught.value.errors
    assert error.loc == ()
    assert message in error.msg


def test_spec_error_carries_the_source_shortened_when_huge() -> None:
    with pytest.raises(SpecError) as caught:
        Expression.compile("epoch.real")
    assert caught.value.errors[0].value == "epoch.real"
    with pytest.raises(SpecError) as caught:
        Expression.compile("1" * 2**20)
    assert len(caught.value.errors[0].value) <= 60


def test_a_parser_crash_is_reported_as_a_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def overflow(*args: Any, **kwargs: Any) -> ast.AST:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(ast, "parse", overflow)
    with pytest.raises(SpecError, match="nested too deeply to parse"):
        Expression.compile("epoch")


DEEP = 5_000


@pytest.mark.parametrize(
    "source",
    [
        "(" * DEEP + "epoch" + ")" * DEEP,
        "-" * DEEP + "epoch",
        "not " * DEEP + "epoch",
        "cos(" * DEEP + "epoch" + ")" * DEEP,
        "**".join(["epoch"] * DEEP),
        "+".join(["epoch"] * DEEP),
        "<".join(["epoch"] * DEEP),
        "epoch if " * DEEP + "1" + " else 1" * DEEP,
        "-(" * DEEP + "epoch" + ")" * DEEP,
        "[" * DEEP + "]" * DEEP,
        "lambda: " * DEEP + "1",
        "epoch" + ".a" * DEEP,
        "epoch" + "[0]" * DEEP,
        "epoch" + "()" * DEEP,
        "f'{" * 50 + "1" + "}'" * 50,
    ],
    ids=lambda source: source[:12],
)
def test_nesting_5000_deep_is_a_spec_error_even_past_the_length_limit(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The length limit refuses these first; without it, the parser and the size check must still
    # refuse them cleanly, never with a RecursionError.
    monkeypatch.setattr(expression, "MAX_SOURCE_LENGTH", 10**6)
    with pytest.raises(SpecError):
        Expression.compile(source)


@pytest.mark.parametrize("source", ["epoch + \ud800", "\udcff", "epoch\x00", "\x00"])
def test_text_python_cannot_parse_is_a_spec_error(source: str) -> None:
    with pytest.raises(SpecError, match="not a valid expression"):
        Expression.compile(source)


def test_limits_leave_room_for_real_formulas() -> None:
    # Exponents read the step, or fold to a constant within the limit: both compile.
    assert Expression.compile("0.5 ** (epoch * 1000)")(2) == 0.0
    assert Expression.compile("2 ** (512 * 2 - 1) // 2 ** 1000")(0) == 2.0**23
    assert Expression.compile("0.5 ** 1024")(0) == 0.5**1024
    assert Expression.compile(_balanced(100))(1) == 100.0
    assert Expression.compile("-" * 30 + "epoch")(3) == 3.0


# --- cost --------------------------------------------------------------------------------------


def _tower(levels: int, core: str) -> str:
    for _ in range(levels):
        core = f"1**({core})"
    return core


# The costliest expressions found within the limits. An int is at most a product of a hundred
# factors of at most 64 bits; the step and int literals, one node each, give 54 bits per node, and
# a balanced product, then a division between two products, is as costly as any use of them.
# Compiling costs one compile per constant exponent, at most a few dozen of them.
WORST_CASES = {
    "product of 100 steps": _balanced(100, "step", "*"),
    "quotient of two products of steps": f"{_balanced(66, 'step', '*')}//{_balanced(33, 'step', '*')}",
    "quotient of two products of huge floors": (
        f"{_balanced(37, 'floor(1e308)', '*')}//{_balanced(12, 'floor(1e308)', '*')}%step"
    ),
    "sum of 33 constant powers": "step*" + _balanced(33, "2**(1/3)"),
    "sum of 33 constant powers with no value": "step*" + _balanced(33, "1**(1/0)"),
    "tower of 20 constant powers with no value": "step*" + _tower(20, _balanced(77, "1") + "+1/0"),
}


@pytest.mark.parametrize("name", list(WORST_CASES))
def test_worst_case_compile_and_evaluation_are_fast(name: str) -> None:
    source = WORST_CASES[name]
    compiled = Expression.compile(source)  # accepted: within every limit
    assert compiled.depends_on_step
    compile_time = min(timeit.repeat(lambda: Expression.compile(source), number=5, repeat=5)) / 5

    def evaluate() -> None:
        with contextlib.suppress(ExpressionError):
            compiled(2**53)

    evaluate_time = min(timeit.repeat(evaluate, number=50, repeat=5)) / 50
    print(f"{name}: compile {compile_time * 1e3:.2f} ms, evaluate {evaluate_time * 1e6:.1f} µs")
    # Both are far below these bounds (a couple of milliseconds to compile, tens of microseconds to
    # evaluate): the bounds leave room for slow and busy machines.
    assert compile_time < 0.05
    assert evaluate_time < 0.05


def test_ints_stay_within_a_hundred_factors_of_54_bits() -> None:
    product = Expression.compile(_balanced(100, "step", "*"))
    assert product._fn(2**53) == 2**5300  # the largest: beyond float range, so an overflow error
    with pytest.raises(ExpressionError, match="overflow"):
        product(2**53)
    floors = Expression.compile(_balanced(33, "floor(9e307*step)", "*"))
    assert type(floors._fn(1)) is float  # not an int of 33 * 1024 bits


def test_a_constant_exponent_is_evaluated_once() -> None:
    # Each is checked against the limit and replaced by its value, or by the error it raises.
    source = "step * " + _tower(26, "1 + 1 ** (1 / 0)")
    calls = 0
    real = expression._evaluate

    def counting(node: ast.expr) -> Any:
        nonlocal calls
        calls += 1
        return real(node)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(expression, "_evaluate", counting)
        compiled = Expression.compile(source)
    assert calls == 27 + 1  # one per power, one for the lambda
    with pytest.raises(ExpressionError, match="division by zero"):
        compiled(1)
    assert Expression.compile("2 ** (1 + 2 ** (3 - 1)) * epoch")(1) == 32.0


# --- evaluation errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "epoch", "reason"),
    [
        ("1 / epoch", 0, "division by zero"),
        ("epoch // (epoch - 5)", 5, "division by zero"),
        ("epoch % (epoch - 5.0)", 5, "division by zero"),
        ("log(epoch, epoch)", 1, "division by zero"),
        ("log(epoch)", 0, "math domain error"),
        ("log(epoch - 1)", 0, "math domain error"),
        ("sqrt(epoch - 2)", 1, "math domain error"),
        ("(epoch - 3) ** 0.5", 0, "math domain error"),
        ("0 ** (epoch - 5)", 4, "math domain error"),
        ("exp(epoch)", 1000, "overflow"),
        ("1.5 ** epoch", 2**53, "overflow"),
        ("2 ** epoch", 2**53, "overflow"),
        ("epoch ** epoch", 10**6, "overflow"),
        ("floor(exp(700) * epoch * 1e10)", 1, "overflow"),
        ("1e308 * epoch", 10, "the value is inf, not a finite number"),
        ("1e308 * epoch - 1e308 * epoch", 10, "the value is nan, not a finite number"),
        ("floor(1e308 * epoch - 1e308 * epoch)", 10, "cannot convert float NaN to integer"),
        ("epoch * 10 ** 400", 1, "overflow"),
        ("floor(1e308 * epoch)", 10, "cannot convert float infinity to integer"),
        ("ceil(1e308 * epoch - 1e308 * epoch)", 10, "cannot convert float NaN to integer"),
        ("epoch ** (1 / 0)", 1, "division by zero"),  # a constant exponent with no value
        ("epoch + 2 ** log(0)", 1, "math domain error"),
        ("epoch + 2 ** (2 ** 1024)", 1, "overflow (math range error)"),
        ("epoch + 2 ** floor(1e308 * 10)", 1, "overflow (cannot convert float infinity to integer)"),
        ("log(epoch) ** (1 / 0)", 0, "math domain error"),  # the base fails first, as in Python
    ],
)
def test_evaluation_errors_are_expression_errors(source: str, epoch: int, reason: str) -> None:
    compiled = Expression.compile(source)
    with pytest.raises(ExpressionError) as caught:
        compiled(epoch)
    assert isinstance(caught.value, ValueError)
    assert caught.value.epoch == epoch
    assert reason in caught.value.reason
    assert str(caught.value).endswith(f" at epoch={epoch}")
