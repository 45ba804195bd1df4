"""Per-channel (mean, std) of an image folder, streamed through the threaded decoder, for
folders too large to hold in memory (cached by `deepres.data.registry.dataset_stats`)."""

from __future__ import annotations

from deepres.data.dataset import ChannelStatsAccumulator, Stats
from deepres.data.decode import bad_files_error, decode_rows, map_chunks
from deepres.data.index import FolderIndex


def folder_stats(index: FolderIndex, num_threads: int | None = None) -> Stats:
    """Per-channel (mean, std) over every image of `index` at its native size (0..1 scale)."""

    def work(rows: range) -> tuple[ChannelStatsAccumulator, list[tuple[str, str]]]:
        acc, bad = ChannelStatsAccumulator(), []
        for i, img in decode_rows(index, rows):
            if isinstance(img, str):
                bad.append((index.files[i], img))
            else:
                acc.add(img)
        return acc, bad

    total, bad = ChannelStatsAccumulator(), []
    for acc, problems in map_chunks(work, len(index), num_threads):
        total.merge(acc)
        bad.extend(problems)
    if bad:
        raise bad_files_error(index.root, bad)
    return total.result()
