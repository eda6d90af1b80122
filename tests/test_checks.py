"""The question framework: plain-data encoding, comparison, grading of every kind, and the self-check."""
import json

import numpy as np
import pytest

from rlhf_course import checks
from hypothesis import given, strategies as st

from rlhf_course.checks import Case, Question, check, collect, compare, grade, to_plain
from rlhf_course.questions import all_questions, exercise_ids, get_question, questions_for


def _square(x):
    return np.asarray(x) ** 2


FUNC = Question(id="99.square", kind="function", points=4, title="square", name="square", reference=_square,
                cases=(Case("scalar-like", ([3.0],)), Case("vector", ([1.0, -2.0],)),
                       Case("rejects strings", ("abc",), raises="TypeError"),
                       Case("tiny", ([1e-8],), rtol=1e-3, atol=0.0)))
CHOICE = Question(id="99.choice", kind="choice", points=1, title="c", name="c", answer="B", choices=("A", "B", "C"),
                  feedback={"A": "A is wrong because."})
ORDER = Question(id="99.order", kind="ordering", points=2, title="o", name="o", answer=["C", "A", "B"],
                 choices=("A", "B", "C"))
MATCH = Question(id="99.match", kind="matching", points=3, title="m", name="m", answer={"x": "A", "y": "B", "z": "C"})
VALUE = Question(id="99.value", kind="value", points=1, title="v", name="v", answer=0.5, rtol=1e-3)


def test_plain_data_is_json_and_describes_foreign_objects():
    class Sneaky(float):
        def __eq__(self, other):
            return True

    class Liar:
        def __eq__(self, other):
            return True

    values = [None, Ellipsis, True, 3, 2.5, np.float32(1.5), "s", [1, "a"], {"k": np.arange(3)},
              np.zeros((2, 2)), Liar(), Sneaky(0.25), np.array(["a"], dtype=object)]
    for v in values:
        json.dumps(to_plain(v))  # only JSON types
    assert to_plain(Liar()) == {"t": "object", "type": "test_plain_data_is_json_and_describes_foreign_objects.<locals>.Liar"}
    assert to_plain(np.array(["a"], dtype=object))["t"] == "object"
    # A float subclass is not a float to the grader: it arrives as a description, and its __eq__ never
    # reaches the trusted side.
    assert to_plain(Sneaky(0.25))["t"] == "object"


def test_object_claiming_equality_earns_nothing():
    class Liar:
        def __eq__(self, other):
            return True

        def __float__(self):
            return 0.5

    res = grade(VALUE, collect(VALUE, Liar()))
    assert res.score == 0 and res.status == "failed"


def test_torch_tensors_become_arrays():
    import torch
    assert to_plain(torch.tensor([1.0, 2.0])) == {"t": "array", "shape": [2], "v": [1.0, 2.0]}


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_compare_numbers_within_tolerance(x):
    e = to_plain(x)
    assert compare(e, to_plain(x * (1 + 1e-9)), rtol=1e-6, atol=1e-12)[0]
    assert not compare(e, to_plain(x + 1.0 + abs(x) * 1e-3), rtol=1e-6, atol=1e-12)[0]


def test_compare_infinities_nan_and_shapes():
    inf = to_plain(np.array([np.inf, 1.0]))
    assert compare(inf, to_plain(np.array([np.inf, 1.0])), 1e-6, 0)[0]
    assert not compare(inf, to_plain(np.array([-np.inf, 1.0])), 1e-6, 0)[0]
    assert not compare(inf, to_plain(np.array([1e308, 1.0])), 1e-6, 0)[0]
    assert not compare(to_plain(1.0), to_plain(float("nan")), 1e-6, 1.0)[0]
    ok, msg = compare(to_plain(np.zeros(3)), to_plain(np.zeros(2)), 1e-6, 0)
    assert not ok and "shape" in msg
    # a scalar answer may come back as a 0-d or one-element array, or a list
    assert compare(to_plain(2.0), to_plain(np.array([2.0])), 1e-6, 0)[0]
    assert compare(to_plain(np.array([1.0, 2.0])), to_plain([1.0, 2.0]), 1e-6, 0)[0]
    assert not compare(to_plain(1.0), to_plain("1.0"), 1e-6, 0)[0]
    assert not compare(to_plain(1.0), to_plain(True), 1e-6, 0)[0]


def test_function_question_full_partial_and_not_implemented():
    def right(x):
        if isinstance(x, str):
            raise TypeError("numbers only")
        return np.asarray(x) ** 2

    def wrong_on_vector(x):
        if isinstance(x, str):
            raise TypeError("numbers only")
        return np.asarray(x) ** 2 if x.size == 1 else np.zeros_like(x)

    def stub(x):
        ...

    assert grade(FUNC, collect(FUNC, right)).score == 4
    res = grade(FUNC, collect(FUNC, wrong_on_vector))
    assert (res.score, res.status) == (3, "partial")
    assert [c.passed for c in res.cases] == [True, False, True, True]
    res = grade(FUNC, collect(FUNC, stub))
    assert (res.score, res.status) == (0, "not-answered")
    assert "not implemented" in res.messages[0]
    res = grade(FUNC, collect(FUNC, 42))
    assert (res.score, res.status) == (0, "failed") and "should be a function" in res.messages[0]


def test_exceptions_inside_answers_are_feedback_not_crashes():
    def boom(x):
        raise ZeroDivisionError("oops")

    res = grade(FUNC, collect(FUNC, boom))
    assert res.score == 0
    assert any("ZeroDivisionError: oops" in c.message for c in res.cases)


def test_expected_error_accepts_subclasses():
    class MyTypeError(TypeError):
        pass

    def strict(x):
        if isinstance(x, str):
            raise MyTypeError("no")
        return np.asarray(x) ** 2

    assert grade(FUNC, collect(FUNC, strict)).score == 4


def test_choice_ordering_matching_value():
    assert grade(CHOICE, collect(CHOICE, " b ")).score == 1
    res = grade(CHOICE, collect(CHOICE, "A"))
    assert res.score == 0 and res.messages == ["A is wrong because."]
    assert "one of" in grade(CHOICE, collect(CHOICE, "E")).messages[0]
    assert grade(CHOICE, collect(CHOICE, ...)).status == "not-answered"
    assert grade(ORDER, collect(ORDER, ["c", "A", "B"])).score == 2
    assert grade(ORDER, collect(ORDER, ["A", "B", "C"])).score == 0
    assert "exactly once" in grade(ORDER, collect(ORDER, ["A", "A", "B"])).messages[0]
    assert grade(MATCH, collect(MATCH, {"x": "A", "y": "B", "z": "C"})).score == 3
    res = grade(MATCH, collect(MATCH, {"x": "A", "y": "C", "z": "B"}))
    assert (res.score, res.status) == (1, "partial")
    assert grade(MATCH, collect(MATCH, [("x", "A")])).score == 0
    assert grade(VALUE, collect(VALUE, 0.5004)).score == 1
    assert grade(VALUE, collect(VALUE, 0.51)).score == 0


def test_question_definitions_are_validated():
    with pytest.raises(ValueError, match="kind"):
        Question(id="99.x", kind="essay", points=1, title="", name="x", answer=1)
    with pytest.raises(ValueError, match="NN.name"):
        Question(id="x", kind="value", points=1, title="", name="x", answer=1)
    with pytest.raises(ValueError, match="reference"):
        Question(id="99.x", kind="function", points=1, title="", name="x")
    with pytest.raises(ValueError, match="not among"):
        Question(id="99.x", kind="choice", points=1, title="", name="x", answer="E", choices=("A", "B"))


def test_registry_lookup_and_unknown_ids():
    assert "01" in exercise_ids()
    assert get_question("01.kl_divergence").kind == "function"
    with pytest.raises(KeyError, match="unknown question"):
        get_question("01.nope")
    with pytest.raises(KeyError, match="no exercise"):
        get_question("77.nope")


def test_every_registered_reference_passes_its_own_cases():
    """The course's own references must score full marks: a broken case or reference is caught here."""
    for q in all_questions():
        if q.kind == "function":  # unguarded: the reference *is* the guarded function
            res = grade(q, checks.collect_cases(q.reference, checks.case_payload(q)))
        else:
            res = grade(q, collect(q, q.answer))
        assert res.score == q.points, f"{q.id}: {res}"


def test_self_check_prints_and_never_raises(capsys):
    check("01.kl_divergence", lambda p, q: 1 / 0)
    check("01.kl_divergence", "not a function")
    check("01.nope", 1)
    check("01.penalty_when_equal")
    out = capsys.readouterr().out
    assert "ZeroDivisionError" in out and "should be a function" in out
    assert "unknown question" in out and "not answered" in out


def test_questions_for_is_ordered_and_unique():
    for ex in exercise_ids():
        ids = [q.id for q in questions_for(ex)]
        assert len(ids) == len(set(ids)) and all(i.startswith(ex + ".") for i in ids)
