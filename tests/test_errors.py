"""deepres.errors: the user-facing error type and first_line."""

import pytest

from deepres.errors import DeepresError, first_line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("one line"), "one line"),
        (RuntimeError("first\nsecond\nthird"), "first"),
        (ValueError("\n\n  indented first  \nsecond"), "indented first  "),
        (OSError(28, "No space left on device"), "[Errno 28] No space left on device"),
        (DeepresError("x.pt: damaged\n  details"), "x.pt: damaged"),
        (KeyError("key"), "'key'"),
    ],
)
def test_first_line_is_the_first_non_empty_line(error: BaseException, expected: str) -> None:
    assert first_line(error) == expected


@pytest.mark.parametrize("error", [RuntimeError(), ValueError(""), TimeoutError(" \n\t\n")])
def test_first_line_of_an_empty_message_is_the_type_name(error: BaseException) -> None:
    assert first_line(error) == type(error).__name__
