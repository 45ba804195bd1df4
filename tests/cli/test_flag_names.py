"""One name for one idea in every command: ``--test-subset`` in train and eval; eval's old
``--subset`` still works for a release, with a warning."""

from deepres.cli import build_parser


def test_eval_takes_the_same_subset_flag_as_train(tmp_path, capsys):
    args = build_parser().parse_args(["eval", "--checkpoint", str(tmp_path), "--test-subset", "3"])
    assert args.test_subset == 3
    assert "warning" not in capsys.readouterr().err
    train = build_parser().parse_args(["train", "--test-subset", "3"])
    assert train.test_subset == 3


def test_the_old_eval_flag_still_works_and_says_its_new_name(tmp_path, capsys):
    args = build_parser().parse_args(["eval", "--checkpoint", str(tmp_path), "--subset", "4"])
    assert args.test_subset == 4
    assert "--subset is now --test-subset" in capsys.readouterr().err
