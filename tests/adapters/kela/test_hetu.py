"""HETU validation against the synthetic test codes of tests/fixtures/hetu.py."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from adapters.kela.hetu import CHECK_CHARACTERS, birth_date, gender, hetu_problem, is_valid_hetu
from tests.fixtures.hetu import make_test_hetu

birth_dates = st.dates(min_value=date(1850, 1, 1), max_value=date(2099, 12, 31))
test_numbers = st.integers(min_value=900, max_value=999)


@given(birth_dates, test_numbers)
def test_synthetic_codes_are_valid(born: date, individual: int) -> None:
    hetu = make_test_hetu(born, individual)
    assert hetu_problem(hetu) is None
    assert birth_date(hetu) == born
    assert gender(hetu) == ("male" if individual % 2 else "female")


@given(birth_dates, test_numbers, st.sampled_from(CHECK_CHARACTERS))
def test_any_other_check_character_is_refused(born: date, individual: int, other: str) -> None:
    hetu = make_test_hetu(born, individual)
    if other == hetu[-1]:
        return
    problem = hetu_problem(hetu[:-1] + other)
    assert problem is not None and "check character" in problem


def test_new_century_signs() -> None:
    base = make_test_hetu(date(1999, 1, 1), 950)
    for sign in "YXWVU":
        assert is_valid_hetu(base[:6] + sign + base[7:])
        assert birth_date(base[:6] + sign + base[7:]) == date(1999, 1, 1)
    base = make_test_hetu(date(2010, 1, 1), 950)
    for sign in "BCDEF":
        assert birth_date(base[:6] + sign + base[7:]) == date(2010, 1, 1)


def test_known_examples() -> None:
    assert is_valid_hetu("131052-308T")
    assert hetu_problem("131052-308U") == "has an invalid check character U (expected T)"
    assert "birth date" in (hetu_problem("311352-308T") or "")
    assert "form" in (hetu_problem("131052Z308T") or "")
    assert "never issued" in (hetu_problem("131052-001H") or "")
