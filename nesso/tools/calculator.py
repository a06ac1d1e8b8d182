"""A calculator that parses arithmetic with Python's ast module and evaluates only numbers and operators
(never eval/exec)."""

from __future__ import annotations

import ast
import math
import operator

from nesso.agent import tool

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
          "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin, "cos": math.cos,
          "tan": math.tan, "min": min, "max": max}
_CONSTS = {"pi": math.pi, "e": math.e}
MAX_LENGTH, MAX_EXPONENT, MAX_MAGNITUDE = 300, 1000, 1e300


class CalcError(ValueError):
    pass


def evaluate(expression: str) -> float | int:
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    if not text:
        raise CalcError("empty expression")
    if len(text) > MAX_LENGTH:
        raise CalcError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalcError(f"cannot parse {expression!r}; use numbers, + - * / // % **, parentheses and "
                        f"functions {', '.join(sorted(_FUNCS))}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return _checked(node.value)  # 1e309 reads as inf
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalcError(f"exponent {right} is too large (max {MAX_EXPONENT})")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalcError("division by zero") from None
        except OverflowError:
            raise CalcError("result out of range") from None
        return _checked(value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        try:
            return _checked(_FUNCS[node.func.id](*[_eval(a) for a in node.args]))
        except OverflowError:
            raise CalcError(f"{node.func.id}: result out of range") from None
        except (ValueError, TypeError) as e:
            raise CalcError(f"{node.func.id}: {e}") from None
    raise CalcError(f"unsupported element {ast.unparse(node)!r} in the expression")


def _checked(value: float | int) -> float | int:
    if isinstance(value, complex) or not abs(value) <= MAX_MAGNITUDE:  # NaN (inf - inf) compares false too
        raise CalcError("result out of range")
    return value


@tool
def calculator(expression: str) -> dict:
    """Evaluate an arithmetic expression exactly, e.g. '(12.5 + 7) * 3' or 'sqrt(2) * 10'.

    Args:
        expression: Arithmetic with numbers (dot as decimal separator), + - * / // % ** and parentheses;
            functions sqrt, abs, round, floor, ceil, log, log10, exp, sin, cos, tan, min, max; constants pi, e.
    """
    value = evaluate(expression)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return {"expression": expression, "result": value}
