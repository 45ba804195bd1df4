"""Ensembles: the mean of the members' softmax probabilities, checked by hand; an ensemble of
one model twice is that model; evaluation of members and ensemble in one pass agrees with
evaluating the ``Ensemble`` module; members that do not match are refused."""

import pytest
import torch

from deepres import DeepresError, create_model
from deepres.cli import main
from deepres.data import load_split
from deepres.deploy import evaluate_checkpoints
from deepres.inference import Ensemble, Predictor, TestTimeAugmentation, load_members
from deepres.train.evaluate import eval_batches, evaluate


def test_two_different_models_average_their_softmaxes():
    torch.manual_seed(0)
    a, b = create_model("resnet8", num_classes=7).eval(), create_model("resnet20", num_classes=7)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        by_hand = (a(x).softmax(-1) + b.eval()(x).softmax(-1)) / 2
        got = Ensemble([a, b])(x)
    torch.testing.assert_close(got.exp(), by_hand, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.softmax(-1), by_hand, atol=1e-6, rtol=1e-5)


def test_an_ensemble_of_one_model_twice_is_that_model():
    model = create_model("resnet8", num_classes=10).eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        logits, got = model(x), Ensemble([model, model])(x)
    torch.testing.assert_close(got, logits.log_softmax(-1), atol=1e-5, rtol=1e-5)
    assert torch.equal(got.argmax(-1), logits.argmax(-1))


def test_eval_of_a_run_twice_equals_the_run(two_runs, cifar_small):
    run = two_runs[0]
    single = evaluate_checkpoints(run, data=str(cifar_small))
    twice = evaluate_checkpoints([run, run], data=str(cifar_small))
    assert len(twice.members) == 2 and twice.result.count == single.result.count == 200
    for result in (twice.result, twice.members[0].result, twice.members[1].result):
        assert (result.top1, result.top5) == (single.result.top1, single.result.top5)
        assert torch.equal(result.confusion, single.result.confusion)
        assert result.loss == pytest.approx(single.result.loss, rel=1e-5)


@pytest.mark.parametrize("tta", [None, "flip"])
def test_one_pass_eval_agrees_with_the_ensemble_module(two_runs, cifar_small, tta):
    evaluation = evaluate_checkpoints(list(two_runs), data=str(cifar_small), subset=5, tta=tta)
    members = load_members(two_runs)
    meta = members[0].meta
    images = load_split(str(cifar_small), "test", subset=5, image_size=32,
                        stats=(meta["mean"], meta["std"]))  # fmt: skip
    ensemble = Ensemble([m.model for m in members])
    wrapped = TestTimeAugmentation(ensemble, tta) if tta else ensemble
    expected = evaluate(wrapped, eval_batches(images, 250, meta), 10).result()
    for member, result in zip(members, evaluation.members, strict=True):
        alone = TestTimeAugmentation(member.model, tta) if tta else member.model
        assert (
            result.result.top1 == evaluate(alone, eval_batches(images, 250, meta), 10).result().top1
        )
    got = evaluation.result
    assert (got.top1, got.top5) == (expected.top1, expected.top5)
    assert torch.equal(got.confusion, expected.confusion)
    assert got.loss == pytest.approx(expected.loss, rel=1e-5)


def test_predictor_of_two_runs_gives_the_mean_of_their_probabilities(two_runs, cifar_small):
    image = sorted((cifar_small / "test" / "frog").iterdir())[0]
    both = Predictor(list(two_runs)).predict_file(image, top_k=10).top
    alone = [dict(Predictor(run).predict_file(image, top_k=10).top) for run in two_runs]
    assert len(both) == 10
    for name, prob in both:
        assert prob == pytest.approx((alone[0][name] + alone[1][name]) / 2, abs=1e-6)


def test_members_with_other_classes_are_refused(two_runs, tmp_path):
    other = tmp_path / "other"
    options = ["--model", "resnet8", "--data", "synthetic:3x32x32:4:64", "--epochs", "1",
               "--batch-size", "32", "--threads", "1", "--progress", "off"]  # fmt: skip
    assert main(["train", *options, "--out", str(other)]) == 0
    with pytest.raises(DeepresError) as err:
        load_members([two_runs[0], other])
    message = str(err.value)
    assert str(two_runs[0] / "model.safetensors") in message and str(other) in message
    assert "differ in classes (10 items [airplane" in message and "vs ['class0'" in message
