"""The remembered choices of ``--runtime auto`` (``deepres.deploy.choices``): a JSON file
checked before it is trusted; a corrupt file or a tampered record is measured again and
written anew."""

import json
import pickle

import pytest
import torch

from deepres.deploy.choices import CHOICES_FILE
from deepres.deploy.runtime import prepare
from deepres.deploy.runtimes import BUILDERS


def choices(cache) -> dict:
    return json.loads((cache / CHOICES_FILE).read_text())["choices"]


def off_by(delta: float):
    """A 'runtime' that answers the example batch instantly, each logit off by ``delta``."""

    def build(model, target):
        with torch.inference_mode():
            wrong = model(target.example) + delta
        return lambda images: wrong

    return build


CORRUPT = {
    "not json": b"{not json",
    "pickle": pickle.dumps({"version": 1, "choices": {}}),
    "a list": b"[1, 2]",
    "choices not an object": b'{"version": 1, "choices": []}',
    "other version": b'{"version": 99, "choices": {}}',
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_a_corrupt_choice_file_is_ignored_and_rewritten(loaded, tmp_path, content, caplog):
    model, meta = loaded
    (tmp_path / CHOICES_FILE).write_bytes(content)
    candidates = {"torch": BUILDERS["torch"]}
    prepared = prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    assert prepared.source == "measured" and prepared.runtime == "torch"
    assert f"ignoring {tmp_path / CHOICES_FILE}" in caplog.text
    assert json.loads((tmp_path / CHOICES_FILE).read_text())["version"] == 1
    [record] = choices(tmp_path).values()
    assert record["runtime"] == "torch"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(runtime="rm -rf /"),  # not a runtime of the candidates
        lambda r: r.update(runtime=["torch"]),  # not a string
        lambda r: r["facts"].update(threads=999),  # made under other facts
    ],
    ids=["unknown runtime", "wrong type", "other facts"],
)
def test_a_tampered_record_is_not_trusted(loaded, tmp_path, tamper):
    model, meta = loaded
    candidates = {"torch": BUILDERS["torch"], "off": off_by(1e-2)}
    prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    file = tmp_path / CHOICES_FILE
    content = json.loads(file.read_text())
    [record] = content["choices"].values()
    tamper(record)
    file.write_text(json.dumps(content))
    prepared = prepare(model, meta, "auto", batch_size=4, candidates=candidates, cache=tmp_path)
    assert prepared.source == "measured" and prepared.runtime == "torch"
    [record] = choices(tmp_path).values()
    assert record["runtime"] == "torch" and record["facts"]["threads"] == torch.get_num_threads()
