"""Training data: the three manifest styles, up-front validation (every bad input named before step 1), the CLI's
one-line errors, and the committed smoke manifest."""

import json
import subprocess
import sys

import pytest
from conftest import DEMO_FLAC, DEMO_IMAGE, DEMO_VIDEO, DEMO_WAV, MEDIA, ROOT, needs_media

from videosalmonn.errors import InputError
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.prompting.templates import OfficialStyle
from videosalmonn.training.config import SourceConfig
from videosalmonn.training.data import read_items, validate_items

pytestmark = needs_media
OFFICIAL_QA = [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def conv(q, a):
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def test_three_manifest_styles(tmp_path):
    ours = write_jsonl(
        tmp_path / "ours.jsonl",
        [
            {"id": "a", "video": str(DEMO_VIDEO), "start": 1.0, "end": 3.0, "conversation": conv("Q?", "A.")},
            {"id": "b", "image": str(DEMO_IMAGE), "audio": str(DEMO_FLAC), "prompt": "Say?", "answer": "Words."},
        ],
    )
    official = tmp_path / "official.json"
    official.write_text(
        json.dumps(
            [
                {"image_name": str(DEMO_VIDEO), "conversation": OFFICIAL_QA},
                {"image_name": [str(DEMO_VIDEO), str(DEMO_WAV)], "conversation": OFFICIAL_QA},
            ]
        )
    )
    save = tmp_path / "avm.json"
    save.write_text(
        json.dumps(
            [
                {
                    "image": [DEMO_VIDEO.name, DEMO_WAV.name],
                    "question": "Is the audio related?",
                    "answer": "Yes",
                    "text": "x",
                }
            ]
        )
    )
    items = read_items(
        (
            SourceConfig(str(ours)),
            SourceConfig(str(official), repeat=2),
            SourceConfig(str(save), format="avm", media_root=str(MEDIA)),
        )
    )
    assert [x.kind for x in items] == [
        "video+audio",
        "image+audio",
        "video",
        "video+audio",
        "video",
        "video+audio",
        "video+audio",
    ]
    assert items[0].audio.path == str(DEMO_VIDEO) and (items[0].audio.start, items[0].audio.end) == (1.0, 3.0)
    assert items[2].audio is None  # official: a video alone is video-only
    assert items[6].turns[0].text == "Is the audio related?" and items[6].turns[1].text == "Yes"
    assert items[0].source.endswith("ours.jsonl:1") and items[6].source.endswith("avm.json[0]")


def test_bad_line_is_named(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"video": str(DEMO_VIDEO), "prompt": "Q", "answer": "A"}, "{not json"])
    with pytest.raises(InputError, match=r"m.jsonl:2: not valid JSON"):
        read_items((SourceConfig(str(path)),))
    path = write_jsonl(tmp_path / "q.jsonl", [{"audio": str(DEMO_FLAC), "prompt": "Q"}])
    with pytest.raises(InputError, match=r"q.jsonl:1: the conversation must end with an assistant answer"):
        read_items((SourceConfig(str(path)),))


def test_all_missing_media_reported_before_training(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"video": str(DEMO_VIDEO), "prompt": "Q", "answer": "A"},
            {"video": "gone1.mp4", "prompt": "Q", "answer": "A"},
            {"image": str(DEMO_IMAGE), "audio": "gone2.wav", "prompt": "Q", "answer": "A"},
        ],
    )
    with pytest.raises(InputError) as e:
        read_items((SourceConfig(str(path)),))
    message = str(e.value)
    assert message.startswith("2 media file(s) not found") and "m.jsonl:2" in message and "gone2.wav" in message


def test_prompt_keys_and_lengths_checked_up_front(tmp_path):
    tokenizer = load_tokenizer("tiny")
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"audio": str(DEMO_FLAC), "prompt": "<asr>", "answer": "A"},
            {"audio": str(DEMO_FLAC), "prompt": "Q", "answer": "long answer " * 200},
        ],
    )
    items = read_items((SourceConfig(str(path)),))
    with pytest.raises(InputError, match=r"m.jsonl:1: prompt <asr> is not a key .*no prompt pool is set"):
        validate_items(items, tokenizer, OfficialStyle(), 512, {})
    with pytest.raises(InputError, match=r"m.jsonl:2: the answer is \d+ tokens long; the limit is 512"):
        validate_items(items, tokenizer, OfficialStyle(), 512, {"asr": ("Transcribe.",)})


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "videosalmonn", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
        )

    out = run("train", "--config", "configs/train/tiny-smoke.yaml", "optim.bogus=1")
    assert out.returncode == 2 and "unknown key 'optim.bogus'" in out.stderr and out.stderr.count("\n") == 1
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"video": "nope.mp4", "prompt": "Q", "answer": "A"}])
    out = run(
        "train",
        "--config",
        "configs/train/tiny-smoke.yaml",
        f"data.sources=[{{path: {manifest}}}]",
        f"output_dir={tmp_path / 'run'}",
    )
    assert out.returncode == 2 and "m.jsonl:1: " in out.stderr and "nope.mp4" in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_committed_smoke_manifest_is_the_script_output(tmp_path):
    out = subprocess.run(
        [sys.executable, "scripts/make_smoke_manifest.py", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for name in ("tiny-smoke.jsonl", "tiny-smoke-official.json"):
        assert (tmp_path / name).read_text() == (ROOT / "configs" / "train" / name).read_text(), name


def test_smoke_config_finds_the_media_in_videosalmonn_shared(tmp_path, monkeypatch):
    """The smoke run's media come from $VIDEOSALMONN_SHARED/media (README), default ../shared/media."""
    from videosalmonn.training.config import load_train_config

    moved = tmp_path / "elsewhere"
    (moved / "media").mkdir(parents=True)
    for f in MEDIA.iterdir():
        (moved / "media" / f.name).symlink_to(f.resolve())
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("VIDEOSALMONN_SHARED", str(moved))
    sources = load_train_config(ROOT / "configs/train/tiny-smoke.yaml").data.sources
    assert {s.media_root for s in sources} == {str(moved / "media")}
    items = read_items(sources)
    assert sorted({x.kind for x in items}) == ["audio", "image", "image+audio", "video", "video+audio"]
    assert all(str(ref.path).startswith(str(moved)) for x in items for ref in (x.visual, x.audio) if ref)

    monkeypatch.delenv("VIDEOSALMONN_SHARED")
    sources = load_train_config(ROOT / "configs/train/tiny-smoke.yaml").data.sources
    assert {s.media_root for s in sources} == {"../shared/media"}


def test_config_env_references(monkeypatch):
    from videosalmonn.config import expand_env
    from videosalmonn.errors import ConfigError

    monkeypatch.setenv("VS_TEST_ROOT", "/data")
    monkeypatch.delenv("VS_TEST_UNSET", raising=False)
    tree = {"a": ["${VS_TEST_ROOT}/x", "${VS_TEST_UNSET:-d}/y", "$5 ${VS_TEST_ROOT:-no}"], "n": 3}
    assert expand_env(tree, "f.yaml") == {"a": ["/data/x", "d/y", "$5 /data"], "n": 3}
    with pytest.raises(ConfigError, match=r"f.yaml: \$\{VS_TEST_UNSET\} is not set"):
        expand_env({"a": "${VS_TEST_UNSET}"}, "f.yaml")


@pytest.mark.slow
def test_training_reads_save_files_without_evaluation():
    """The SAVE readers are data (data/save/); training must not pull in the evaluation package."""
    code = "import sys, videosalmonn.training.data; print(sorted(m for m in sys.modules if '.evaluation' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_source_limit_takes_the_first_samples_before_repeat(tmp_path):
    rows = [{"id": f"s{i}", "audio": str(DEMO_FLAC), "prompt": f"Q{i}", "answer": "A"} for i in range(5)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    items = read_items((SourceConfig(str(path), limit=3, repeat=2),))
    assert [x.turns[0].text for x in items] == ["Q0", "Q1", "Q2"] * 2
    # a missing file past the limit is never read, so it is not an error
    path = write_jsonl(tmp_path / "n.jsonl", rows[:2] + [{"audio": "/no/such.flac", "prompt": "Q", "answer": "A"}])
    assert len(read_items((SourceConfig(str(path), limit=2),))) == 2
    with pytest.raises(InputError, match="not found"):
        read_items((SourceConfig(str(path)),))
    with pytest.raises(Exception, match="limit must be >= 1"):
        SourceConfig(str(path), limit=0)
