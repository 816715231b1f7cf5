import numpy as np
import pytest

from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.evaluation.metrics import choose_primary, companions, evaluate, exact_match, normalize, token_f1
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


def _task(labels=("a", "b")):
    return Task(name="t", kind="classification", train=[], validation=[], test=[], instruction="", labels=list(labels))


def test_mcc_and_balanced_accuracy_equal_scikit_learn_on_known_cases():
    from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef

    # 8 'a', 2 'b'; one 'b' found, one 'a' missed: recall a = 7/8, recall b = 1/2
    targets = ["a"] * 8 + ["b"] * 2
    outputs = ["a"] * 7 + ["b", "b", "a"]
    result = evaluate(_task(), [ex(t) for t in targets], outputs)
    assert result["balanced_accuracy"]["value"] == pytest.approx((7 / 8 + 1 / 2) / 2)
    # MCC from the 2x2 table: tp=1 (b), tn=7, fp=1, fn=1 -> (7 - 1) / sqrt(2 * 2 * 8 * 8) = 0.375
    assert result["mcc"]["value"] == pytest.approx(0.375)
    assert result["mcc"]["value"] == pytest.approx(matthews_corrcoef(targets, outputs))
    assert result["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(targets, outputs))
    constant = evaluate(_task(), [ex(t) for t in targets], ["a"] * 10)
    assert constant["mcc"]["value"] == 0.0 and constant["balanced_accuracy"]["value"] == 0.5
    assert constant["accuracy"]["value"] == pytest.approx(0.8)
    assert constant["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_stacked_confusion_metrics_equal_scikit_learn_on_random_cases():
    """The bootstrap's numpy formulas, against scikit-learn, with outputs outside the label set and
    constant predictions among the cases."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, f1_score, matthews_corrcoef

    from tunewise.evaluation.label_metrics import balanced_accuracy_of, confusion_stack, macro_f1_of, mcc_of

    rng = np.random.default_rng(1)
    for case in range(45):
        k, n = int(rng.integers(2, 5)), int(rng.integers(1, 40))
        y_true, y_pred = rng.integers(0, k, n), rng.integers(-1, k, n)
        if case % 3 == 0:
            y_pred[:] = y_pred[0]
        cm = confusion_stack(y_true, y_pred, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert macro_f1_of(cm)[0] == pytest.approx(
                f1_score(y_true, y_pred, labels=range(k), average="macro", zero_division=0))
            assert balanced_accuracy_of(cm)[0] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
            assert mcc_of(cm)[0] == pytest.approx(matthews_corrcoef(y_true, y_pred))


def test_imbalanced_test_labels_make_macro_f1_primary_and_say_why():
    examples = [ex("a")] * 70 + [ex("b")] * 30
    result = evaluate(_task(), examples, ["a"] * 100, n_boot=50)
    assert result["primary"] == "macro_f1"
    assert "'a' holds 70%" in result["primary_reason"] and "always answering 'a'" in result["primary_reason"]
    assert companions(result) == ["mcc", "accuracy"]
    balanced = evaluate(_task(), [ex("a")] * 60 + [ex("b")] * 40, ["a"] * 100, n_boot=50)
    assert balanced["primary"] == "accuracy" and "balanced enough" in balanced["primary_reason"]
    assert companions(balanced) == ["macro_f1"]
    three = evaluate(_task("abc"), [ex("a")] * 80 + [ex("b")] * 10 + [ex("c")] * 10, ["a"] * 100, n_boot=50)
    assert companions(three) == ["balanced_accuracy", "accuracy"]


def test_metric_option_overrides_the_choice_and_must_fit_the_task_kind():
    examples = [ex("a")] * 70 + [ex("b")] * 30
    assert choose_primary("classification", [e.target for e in examples], "accuracy")[0] == "accuracy"
    assert choose_primary("classification", ["a", "b"], "mcc") == ("mcc", "set by `metric: mcc` in the config")
    assert choose_primary("generation", ["x"], None)[0] == "exact_match"
    with pytest.raises(UserError, match="metric: 'token_f1' does not apply to classification tasks"):
        choose_primary("classification", ["a"], "token_f1")
