import numpy as np
import pytest

from tunewise.data import Example, Task
from tunewise.evaluation.metrics import evaluate, exact_match, normalize, token_f1
from tunewise.evaluation.stats import bootstrap_ci


def ex(target, text="q"):
    return Example(id="1", input=text, target=target)


def test_exact_match_numbers_and_text():
    assert exact_match(ex("18"), "She makes $18 every day, so the answer is 18.") == 1.0
    assert exact_match(ex("1,200"), "1200") == 1.0
    assert exact_match(ex("18"), "The answer is 17") == 0.0
    assert exact_match(ex("Paris"), "paris.") == 1.0
    assert exact_match(ex("the Eiffel Tower"), "Eiffel tower") == 1.0
    assert exact_match(ex("Paris"), "Lyon") == 0.0


def test_token_f1():
    assert token_f1(ex("new york city"), "new york") == pytest.approx(0.8)
    assert token_f1(ex("blue"), "") == 0.0
    assert normalize("The  Cat!") == "cat"
    assert token_f1(ex("blue whale"), "red fox") == 0.0


def test_bootstrap_interval_contains_value_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.random(30) < 0.7, np.mean)
    large = bootstrap_ci(rng.random(3000) < 0.7, np.mean)
    for ci in (small, large):
        assert ci["low"] <= ci["value"] <= ci["high"]
    assert (large["high"] - large["low"]) < (small["high"] - small["low"]) / 5
    assert 0.67 < large["value"] < 0.73


def test_classification_metrics_and_confusion():
    task = Task(name="t", kind="classification", train=[], validation=[], test=[], instruction="",
                labels=["a", "b"])
    examples = [ex("a"), ex("a"), ex("b"), ex("b")]
    result = evaluate(task, examples, ["a", "b", "b", "b"])
    assert result["accuracy"]["value"] == pytest.approx(0.75)
    assert result["confusion"]["matrix"] == [[1, 1], [0, 2]]
    assert result["macro_f1"]["value"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert result["primary"] == "accuracy"


def test_generation_metrics():
    task = Task(name="t", kind="generation", train=[], validation=[], test=[], instruction="")
    result = evaluate(task, [ex("4"), ex("blue whale")], ["2+2 = 4", "whale"])
    assert result["exact_match"]["value"] == pytest.approx(0.5)
    assert result["token_f1"]["value"] == pytest.approx(2 / 3)  # '22 4' vs '4' and 'whale' vs 'blue whale'
