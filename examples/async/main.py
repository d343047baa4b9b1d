"""Digits of pi: a deliberately slow function for asynchronous calls.

The body (or ``?digits=N``) says how many digits; the answer is ``3.1415...``.
Uses Machin's formula with integer arithmetic: pi = 16 atan(1/5) - 4 atan(1/239).
"""


def _arctan_inverse(x: int, scale: int) -> int:
    """atan(1/x) * scale, by its Taylor series, in integers."""
    power = scale // x
    total = power
    x2 = x * x
    n = 1
    sign = -1
    while power:
        power //= x2
        n += 2
        total += sign * (power // n)
        sign = -sign
    return total


def pi_digits(digits: int) -> str:
    guard = 10
    scale = 10 ** (digits + guard)
    pi = 4 * (4 * _arctan_inverse(5, scale) - _arctan_inverse(239, scale))
    text = str(pi // 10 ** guard)
    return text[0] + "." + text[1:]


def handler(context, event):
    raw = event.fields.get("digits") or event.body or b"100"
    if isinstance(raw, bytes):
        raw = raw.decode()
    digits = max(1, min(int(str(raw).strip()), 200_000))
    context.logger.info_with("Computing pi", digits=digits, call_id=event.id)
    return pi_digits(digits)
