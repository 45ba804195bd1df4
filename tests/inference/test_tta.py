"""Test-time augmentation: flips and shifted crops built by hand in uint8 space, as the
training crops are; the wrapper, evaluation (in-memory data and image folders) and the
Predictor all average the same views."""

import pytest
import torch
import torch.nn.functional as F

from deepres import DeepresError, create_model
from deepres.cli import main
from deepres.data import load_split, normalize
from deepres.deploy import evaluate_checkpoints
from deepres.inference import Predictor, TestTimeAugmentation, tta_views
from deepres.inference.members import load_member
from deepres.inference.tta import black_level
from deepres.train.evaluate import eval_batches, evaluate

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=10)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, as after training
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def run(cifar_small, tmp_path_factory):
    """A tiny real run: ResNet-8, one epoch on 200 real CIFAR images."""
    out = tmp_path_factory.mktemp("tta") / "run"
    options = ["--model", "resnet8", "--data", str(cifar_small), "--epochs", "1",
               "--batch-size", "50", "--train-subset", "20", "--threads", "1",
               "--progress", "off", "--out", str(out)]  # fmt: skip
    assert main(["train", *options]) == 0
    return out


def test_flip_of_a_mirror_symmetric_image_is_plain_log_softmax(model):
    half = torch.randn(4, 3, 32, 16, generator=torch.Generator().manual_seed(1))
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)
    with torch.no_grad():
        expected = model(symmetric).log_softmax(-1)
        got = TestTimeAugmentation(model, "flip")(symmetric)
        asymmetric = TestTimeAugmentation(model, "flip")(torch.randn(4, 3, 32, 32))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert asymmetric.exp().sum(-1).sub(1).abs().max() < 1e-5  # log-probabilities


def shifted_by_hand(uint8: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """The crop of the zero-padded (2 pixels) uint8 image that moves it down/right."""
    h, w = uint8.shape[-2:]
    padded = F.pad(uint8, (2, 2, 2, 2))  # zeros in uint8 space, as training pads
    return padded[..., 2 - down : 2 - down + h, 2 - right : 2 - right + w]


def test_flip_crop_views_are_the_zero_padded_uint8_crops_normalised():
    uint8 = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    views = tta_views(normalize(uint8, MEAN, STD), "flip-crop", black_level(MEAN, STD))
    assert len(views) == 10
    shifts = [(0, 0), (-2, 0), (2, 0), (0, -2), (0, 2)]
    expected = [
        shifted_by_hand(img, dy, dx) for img in (uint8, uint8.flip(-1)) for dy, dx in shifts
    ]
    for view, hand in zip(views, expected, strict=True):
        torch.testing.assert_close(view, normalize(hand, MEAN, STD), atol=1e-6, rtol=0)
    assert torch.equal(views[0], normalize(uint8, MEAN, STD))  # the image itself first


def test_flip_crop_wrapper_averages_the_ten_views_probabilities(model):
    uint8 = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    shifts = [(0, 0), (-2, 0), (2, 0), (0, -2), (0, 2)]
    with torch.no_grad():
        probs = [
            model(normalize(shifted_by_hand(img, dy, dx), MEAN, STD)).softmax(-1)
            for img in (uint8, uint8.flip(-1))
            for dy, dx in shifts
        ]
        got = TestTimeAugmentation(model, "flip-crop", MEAN, STD)(normalize(uint8, MEAN, STD))
    torch.testing.assert_close(got.exp(), sum(probs) / 10, atol=1e-6, rtol=1e-5)


def test_bad_modes_are_refused(model):
    with pytest.raises(DeepresError, match="unknown TTA mode 'five-crop'"):
        TestTimeAugmentation(model, "five-crop")
    with pytest.raises(DeepresError, match="flip-crop TTA needs the model's mean and std"):
        TestTimeAugmentation(model, "flip-crop")


@pytest.mark.parametrize("mode", ["flip", "flip-crop"])
def test_eval_with_tta_is_the_wrapped_model_evaluated_on_in_memory_data(run, cifar_small, mode):
    evaluation = evaluate_checkpoints(run, data=str(cifar_small), subset=5, tta=mode)
    member = load_member(run)
    meta = member.meta
    images = load_split(str(cifar_small), "test", subset=5, image_size=32,
                        stats=(meta["mean"], meta["std"]))  # fmt: skip
    wrapped = TestTimeAugmentation(member.model, mode, meta["mean"], meta["std"])
    expected = evaluate(wrapped, eval_batches(images, 250, meta), 10).result()
    plain = evaluate(member.model, eval_batches(images, 250, meta), 10).result()
    got = evaluation.result
    assert evaluation.tta == mode and got.count == 50
    assert (got.top1, got.top5) == (expected.top1, expected.top5)
    assert torch.equal(got.confusion, expected.confusion)
    assert got.loss == pytest.approx(expected.loss, rel=1e-5)
    single = evaluation.single_view
    assert (single.top1, single.top5, single.loss) == (plain.top1, plain.top5, plain.loss)


def test_predictor_with_tta_averages_the_image_and_its_mirror(run, cifar_small):
    image = sorted((cifar_small / "test" / "ship").iterdir())[0]
    predictor = Predictor(run, tta="flip")
    plain = Predictor(run)
    x = plain.prepare(image.read_bytes(), image.name)
    with torch.no_grad():
        expected = (plain.model(x).softmax(-1) + plain.model(x.flip(-1)).softmax(-1)) / 2
    top = predictor.predict_file(image, top_k=10).top
    assert predictor.meta["tta"] == "flip"
    for name, prob in top:
        assert prob == pytest.approx(expected[0, predictor.classes.index(name)].item(), abs=1e-6)
