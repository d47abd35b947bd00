"""The on-disk trace cache: keys, round trip, corrupt entries, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import warnings
from pathlib import Path

import pytest

from fact_locator.cache import TraceCache, TraceCacheWarning, default_cache_dir
from fact_locator.errors import CacheError
from fact_locator.facts import Fact
from fact_locator.models.identity import ModelIdentity
from fact_locator.tracing.trace import NoiseInfo, Trace

FACT = Fact("The Colosseum", "{} is located in the country of", "Italy", id="colosseum")
SETTINGS = {"samples": 10, "window": 10, "kinds": ["hidden", "mlp"], "seed": 0}


def make_trace(p_clean: float = 0.75, fact_id: str = "colosseum") -> Trace:
    tokens = ("The", " Col", "osseum", " is", " in")
    grid = tuple(tuple(round(0.01 * (layer + 1) * (tok + 1), 6) for tok in range(len(tokens))) for layer in range(4))
    return Trace(
        model=ModelIdentity(name="m", architecture="LlamaForCausalLM", n_layers=4, fingerprint="x"),
        fact_id=fact_id, subject="The Colosseum", relation="{} is located in the country of",
        prompt="The Colosseum is located in the country of", tokens=tokens, token_ids=(1, 2, 3, 4, 5),
        subject_range=(0, 3), target="Italy", target_token=" Italy", target_id=99, top_token=" Italy",
        p_clean=p_clean, p_corrupt=0.05, ie={"hidden": grid, "mlp": grid}, settings=dict(SETTINGS),
        noise=NoiseInfo(0.1, "given"), timings={"total": 1.5}, versions={"fact_locator": "0.1.0"},
    )


def key(**changes) -> str:
    args = {"model_fingerprint": "abc", "fact": FACT, "settings": SETTINGS, "noise_std": 0.1, "version": "0.1.0/1"}
    args.update(changes)
    return TraceCache.key(**args)


def test_put_get_round_trip(tmp_path):
    cache = TraceCache(tmp_path)
    k = key()
    assert cache.get(k) is None and len(cache) == 0 and k not in cache
    trace = make_trace()
    cache.put(k, trace)
    assert cache.get(k) == trace
    assert cache.get(k).timings == {"total": 1.5}
    assert (tmp_path / "traces" / k[:2] / f"{k}.json").is_file()
    assert len(cache) == 1 and cache.entries() == [k] and k in cache


def test_put_overwrites(tmp_path):
    cache = TraceCache(tmp_path)
    cache.put(key(), make_trace(0.5))
    cache.put(key(), make_trace(0.9))
    assert cache.get(key()).p_clean == 0.9 and len(cache) == 1


def test_key_is_a_sha256_hex_digest_and_stable():
    assert len(key()) == 64 and all(c in "0123456789abcdef" for c in key())
    assert key() == key()
    # settings order does not matter; tuples and lists are the same
    reordered = dict(reversed(list(SETTINGS.items())))
    assert key(settings=reordered) == key()
    assert key(settings={**SETTINGS, "kinds": ("hidden", "mlp")}) == key()


@pytest.mark.parametrize(
    "change",
    [
        {"model_fingerprint": "abd"},
        {"fact": Fact("The Colosseum", "{} is located in the city of", "Italy")},
        {"fact": Fact("The Colosseum", "{} is located in the country of", " Italy")},
        {"fact": Fact("the Colosseum", "{} is located in the country of", "Italy")},
        {"settings": {**SETTINGS, "samples": 11}},
        {"settings": {**SETTINGS, "kinds": ["hidden"]}},
        {"settings": {**SETTINGS, "extra": 1}},
        {"noise_std": 0.1000001},
        {"noise_std": None},
        {"version": "0.1.1/1"},
    ],
)
def test_key_changes_when_any_input_changes(change):
    assert key(**change) != key()


def test_fact_id_and_tags_do_not_change_the_key():
    renamed = Fact(FACT.subject, FACT.relation, FACT.target, id="other", tags=("x",))
    assert key(fact=renamed) == key()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", json.dumps({"version": 999}).encode(), json.dumps({"version": 1, "model": {}}).encode(),
     b"\xff\xfe\x00", json.dumps([1, 2]).encode()],
)
def test_corrupt_entry_warns_once_is_removed_and_misses(tmp_path, content):
    cache = TraceCache(tmp_path)
    k = key()
    path = cache.path(k)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.warns(TraceCacheWarning, match="corrupt trace cache entry"):
        assert cache.get(k) is None
    assert not path.exists()
    # a second corrupt write of the same key is not warned about again by this cache
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(k) is None
    # and the entry can be written anew
    cache.put(k, make_trace())
    assert cache.get(k) == make_trace()


def test_disabled_cache_never_reads_or_writes(tmp_path):
    cache = TraceCache(tmp_path, enabled=False)
    cache.put(key(), make_trace())
    assert cache.get(key()) is None
    assert not (tmp_path / "traces").exists()


def test_clear_removes_entries_and_leftover_temporary_files(tmp_path):
    cache = TraceCache(tmp_path)
    keys = [key(version=str(i)) for i in range(5)]
    for k in keys:
        cache.put(k, make_trace())
    leftover = cache.path(keys[0]).parent / f".{keys[0]}.json.abc.tmp"
    leftover.write_text("half")
    assert len(cache) == 5 and sorted(keys) == cache.entries()  # temporary files are not entries
    assert cache.clear() == 5
    assert len(cache) == 0 and not leftover.exists()
    assert cache.clear() == 0


def test_bad_key_is_refused(tmp_path):
    with pytest.raises(CacheError, match="not a trace cache key"):
        TraceCache(tmp_path).get("../../etc/passwd")


def test_unwritable_root_raises_cache_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="cannot write the trace cache entry"):
        TraceCache(blocker).put(key(), make_trace())


def test_default_root_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FACT_LOCATOR_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert TraceCache().root == tmp_path / "c"


def _writer(root: str, keys: list[str], p_clean: float, rounds: int) -> None:
    cache = TraceCache(Path(root))
    trace = make_trace(p_clean)
    for _ in range(rounds):
        for k in keys:
            cache.put(k, trace)


def _reader(root: str, keys: list[str], rounds: int, queue) -> None:
    cache = TraceCache(Path(root))
    bad = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(rounds):
            for k in keys:
                try:
                    cache.get(k)  # a miss or a whole trace, never a half-written file
                except Warning:
                    bad += 1
    queue.put(bad)


def test_concurrent_writers_leave_valid_entries(tmp_path):
    keys = [key(version=str(i)) for i in range(8)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(str(tmp_path), keys, p, 15)) for p in (0.25, 0.5, 0.75)]
    reader = ctx.Process(target=_reader, args=(str(tmp_path), keys, 15, queue))
    for proc in [*writers, reader]:
        proc.start()
    for proc in [*writers, reader]:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert queue.get(timeout=10) == 0
    cache = TraceCache(tmp_path)
    assert sorted(cache.entries()) == sorted(keys)
    for k in keys:
        assert cache.get(k).p_clean in (0.25, 0.5, 0.75)
    leftovers = [p for p in (tmp_path / "traces").rglob("*") if p.is_file() and p.suffix != ".json"]
    assert leftovers == []
