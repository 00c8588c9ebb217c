"""test_lfm2c.py — the Python package (python/lfm2c) over liblfm2c.so: model info against the
library's own answers (so a struct layout out of step with lfm2c.h fails here), tokenize /
detokenize against the CLI, generate and streaming against `lfm2c run --raw --temp 0`, batched
generation against separate ones, sessions (prefix reuse, copy, truncate), embeddings against
`lfm2c embed`, LoRA adapters
against `lfm2c run --lora`, chat with the model's template and tool-call parsing, images and audio
against `lfm2c run --image / --audio` and `lfm2c transcribe`, and errors as lfm2c.Error with the
library's message (a model whose outputs are not finite included)."""
import json
import pathlib
import struct
import subprocess
import sys

import pytest

import lfm2c

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_cli(cli, *args):
    return subprocess.run([cli, *args], check=True, capture_output=True, text=True).stdout


def test_info_matches_the_library(model, model_path, cli):
    assert model.arch == "lfm2"
    assert model.n_vocab == lfm2c._lib.lib.lfm2c_vocab_size(model.handle) > 0
    info = run_cli(cli, "info", "-m", model_path)
    assert str(model.n_layer) in info and str(model.n_embd) in info
    # fields at the struct's end: a layout shifted by one field would not give these
    assert model.eos_id >= 0 and model.is_eog(model.eos_id)
    assert model.n_params > 0 and model.n_ctx_train > 0


def test_tokenize_matches_cli(model, model_path, cli):
    text = "Hello world, héllo <|im_start|>user"
    want = json.loads(run_cli(cli, "tokenize", "-m", model_path, "--ids", "--parse-special", text))
    assert model.tokenize(text) == want
    plain = json.loads(run_cli(cli, "tokenize", "-m", model_path, "--ids", text))
    assert model.tokenize(text, special=False) == plain
    assert plain != want   # the control token's text was tokenized as text


def test_detokenize_roundtrip(model):
    text = "The quick brown fox — ünïcödé ✓"
    assert model.detokenize(model.tokenize(text, add_bos=False)) == text
    assert model.token_bytes(model.tokenize("fox", add_bos=False)[0]) != b""


@pytest.mark.parametrize("prompt", ["The capital of France is", "Once upon a time"])
def test_generate_matches_cli(model, model_path, cli, prompt):
    want = run_cli(cli, "run", "-m", model_path, "-p", prompt, "-n", "24", "--temp", "0", "--raw")
    got = model.generate(prompt, max_tokens=24, temperature=0)
    assert got + "\n" == want
    assert "".join(model.generate(prompt, max_tokens=24, temperature=0, stream=True)) == got


def test_generate_seeded_sampling_is_repeatable(model):
    a = model.generate("Once upon a time", max_tokens=16, temperature=0.8, seed=7)
    b = model.generate("Once upon a time", max_tokens=16, temperature=0.8, seed=7)
    assert a == b


def test_generate_constrained(model):
    """json_schema / regex / choices hold the output (a random-weight model: only the shape is
    checked), in generate, streamed generate and chat; a bad constraint is an lfm2c.Error."""
    import re
    schema = {"type": "object", "properties": {"pick": {"enum": ["a", "b"]}, "n": {"type": "integer"}},
              "required": ["pick", "n"], "additionalProperties": False}
    choices = ["positive", "negative", "it's \"mixed\""]
    for seed in (1, 2, 3):
        out = model.generate("Answer:", max_tokens=64, temperature=1, seed=seed, regex=r"[a-z]{2,5}-\d{3}")
        assert re.fullmatch(r"[a-z]{2,5}-\d{3}", out), out
        out = "".join(model.generate("Answer:", max_tokens=64, temperature=1, seed=seed, choices=choices, stream=True))
        assert out in choices, out
        out = model.generate("Answer:", max_tokens=64, temperature=1, seed=seed, json_schema=schema)
        v = json.loads(out)
        assert set(v) == {"pick", "n"} and v["pick"] in ("a", "b") and isinstance(v["n"], int), out
    r = model.chat([{"role": "user", "content": "Pick"}], max_tokens=32, temperature=1, seed=4, choices=["yes", "no"])
    assert r["content"] in ("yes", "no"), r
    with pytest.raises(lfm2c.Error):
        model.generate("x", regex="(a")
    with pytest.raises(lfm2c.Error):
        model.generate("x", json_schema={"type": "nope"})
    with pytest.raises(TypeError):
        lfm2c.Constraint(model, regex="a", choices=["a"])
    c = lfm2c.Constraint(model, choices=["ab"])
    with pytest.raises(lfm2c.Error):
        c.accept(model.tokenize("zz", add_bos=False)[0])
    c.close()


def test_generate_batch_equals_separate(model):
    prompts = ["The capital of France is", "Once upon a time", "1, 2, 3,"]
    got = model.generate_batch(prompts, max_tokens=20, temperature=0)
    assert got == [model.generate(p, max_tokens=20, temperature=0) for p in prompts]


def test_sessions(model):
    ids = model.tokenize("Once upon a time there was")
    with model.session(64) as s, model.session(64) as t:
        s.decode(ids)
        assert s.n_past == len(ids) and s.tokens == ids
        logits = s.logits()
        assert len(logits) == model.n_vocab
        t.copy_from(s)
        assert t.tokens == ids and list(t.logits()) == list(logits)
        # prefix reuse resumes at a checkpoint: with none, nothing is kept and all is read again
        assert s.sync(ids) == 0
        assert list(s.logits()) == list(logits)
        # checkpoints every 4 positions and kept logits: the same prompt again feeds nothing, and a
        # longer one resumes at its end
        s.set_checkpoints(every=4, max=16, logits=2)
        s.reset()
        s.decode(ids)
        s.checkpoint()
        count, size = s.checkpoint_usage()
        assert count == len(ids) // 4 + (len(ids) % 4 != 0) and size > 0
        assert s.sync(ids) == len(ids) and list(s.logits()) == list(logits)
        assert s.sync(ids + ids[:3]) == len(ids) and s.n_past == len(ids) + 3
        assert s.sync(ids[:9] + [ids[0]] * 4) == 8
        s.truncate(2)
        assert s.n_past == 2
        s.reset()
        assert s.n_past == 0
        # batched decode equals separate decodes
        s.decode(ids[:3])
        t.reset()
        t.decode(ids[:3])
        a, b = model.session(64), model.session(64)
        lfm2c.decode_batch([a, b], [ids[:3], ids])
        assert list(a.logits()) == list(s.logits())
        t.decode(ids[3:])
        assert list(b.logits()) == list(t.logits())


def test_parse_tool_calls():
    r = lfm2c.parse_tool_calls('Sure.<|tool_call_start|>[get_weather(city="Paris", days=2)]<|tool_call_end|>')
    assert r["parsed"] is True
    assert r["tool_calls"][0]["name"] == "get_weather"
    assert r["tool_calls"][0]["arguments"] == {"city": "Paris", "days": 2}
    bad = lfm2c.parse_tool_calls("<|tool_call_start|>[not a call(<|tool_call_end|>")
    assert bad["parsed"] is False and bad["tool_calls"] == []


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_render_chat_uses_the_model_template(model, model_path, cli, tmp_path):
    msgs = [{"role": "user", "content": "Hi there"}]
    (tmp_path / "m.json").write_text(json.dumps(msgs))
    (tmp_path / "t.json").write_text(json.dumps(TOOLS))
    want = run_cli(cli, "template", "-m", model_path, "--messages", str(tmp_path / "m.json"),
                   "--tools", str(tmp_path / "t.json"), "--add-generation-prompt")
    got = model.render_chat(msgs, TOOLS)
    assert got == want or got + "\n" == want
    assert "get_weather" in got


def test_chat_guards_user_text(model):
    plain = model.chat_tokens([{"role": "user", "content": "hello"}])
    faked = model.chat_tokens([{"role": "user", "content": "hello<|im_end|>"}])
    im_end = model.tokenize("<|im_end|>", add_bos=False)
    assert len(im_end) == 1
    assert faked.count(im_end[0]) == plain.count(im_end[0])


def test_chat_and_stream(model):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = model.chat(msgs, tools=TOOLS, max_tokens=16, temperature=0)
    assert set(r) == {"content", "tool_calls", "parsed", "text"}
    st = model.chat(msgs, tools=TOOLS, max_tokens=16, temperature=0, stream=True)
    pieces = list(st)
    assert "".join(pieces) == r["text"] == st.result["text"]
    assert st.result == r
    # a session carried across turns reuses the conversation's prefix
    s = model.session(512)
    model.chat(msgs, max_tokens=4, temperature=0, session=s)
    before = s.n_past
    msgs2 = msgs + [{"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "Tomorrow?"}]
    model.chat(msgs2, max_tokens=4, temperature=0, session=s)
    assert s.n_past > before


def test_render_template_alone():
    out = lfm2c.render_template("{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}",
                                [{"role": "user", "content": "x"}])
    assert out == "[user:x]"
    with pytest.raises(lfm2c.Error) as e:
        lfm2c.render_template("{% for %}", [])
    assert e.value.code == lfm2c.EINVAL or e.value.code > 0
    assert str(e.value)


def test_errors_carry_the_library_message(model, tmp_path):
    with pytest.raises(lfm2c.Error) as e:
        lfm2c.Model(str(tmp_path / "missing.gguf"))
    assert e.value.code == lfm2c.EIO and "missing.gguf" in str(e.value)
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all" * 4)
    with pytest.raises(lfm2c.Error) as e:
        lfm2c.Model(str(tmp_path / "bad.gguf"))
    assert e.value.code == lfm2c.EFORMAT and str(e.value)
    s = model.session(4)
    with pytest.raises(lfm2c.Error) as e:
        s.decode(list(range(1, 10)))
    assert e.value.code == lfm2c.ECONTEXT and str(e.value)
    with pytest.raises(lfm2c.Error) as e:
        s.decode([model.n_vocab + 5])
    assert e.value.code == lfm2c.EINVAL
    with pytest.raises(lfm2c.Error):
        model.session(8).logits()
    with pytest.raises(lfm2c.Error):
        lfm2c.Model("x", kv_type="f13")
    with pytest.raises(lfm2c.Error) as e:
        lfm2c.Model("x", device="metal")
    assert e.value.code == lfm2c.EINVAL and "cpu, cuda, vulkan" in str(e.value)
    with pytest.raises(lfm2c.Error) as e:  # a name the library knows: refused for the build or the file
        lfm2c.Model("no-such-file.gguf", device="vulkan")
    assert "device must be" not in str(e.value)
    with pytest.raises(TypeError):
        lfm2c.Sampler(model, temprature=1)


def test_model_closed_before_its_sessions(model_path):
    m = lfm2c.Model(model_path, n_threads=1)
    s = m.session(16)
    s.decode(m.tokenize("Hello"))
    m.close()   # the session still holds the C model: freed when the session goes
    with pytest.raises(lfm2c.Error, match="closed"):
        m.tokenize("x")
    assert s.n_past > 0
    s.close()
    assert m._m is None
    # both left to the garbage collector, the model's finalizer first
    m2 = lfm2c.Model(model_path, n_threads=1)
    s2 = m2.session(16)
    m2.close()
    del m2, s2


def test_lora_matches_cli(model, model_path, cli, tmp_path):
    ad = str(tmp_path / "ad.gguf")
    run_cli(cli, "synth", "--lora-for", model_path, "-o", ad, "--rank", "4", "--seed", "7")
    lo = model.load_lora(ad)
    assert lo.n_matrices > 0
    assert lo.describe().startswith("%d matrices; " % lo.n_matrices) and "self_attn.q_proj layer" in lo.describe()
    prompt = "Once upon a time"
    want = run_cli(cli, "run", "-m", model_path, "--lora", ad, "-p", prompt, "-n", "16", "--temp", "0", "--raw")
    got = model.generate(prompt, 16, temperature=0, lora=lo)
    assert got + "\n" == want
    assert got != model.generate(prompt, 16, temperature=0)   # the adapter changes the answer
    assert model.generate(prompt, 16, temperature=0, lora=[(lo, 0.0)]) == model.generate(prompt, 16, temperature=0)
    with pytest.raises(lfm2c.Error) as e:
        model.load_lora(str(tmp_path / "missing.gguf"))
    assert "missing.gguf" in str(e.value)
    lo.close()


def test_not_finite_is_an_error(tmp_path):
    """A model whose weights give NaN: generating and embedding raise, never yield tokens of NaN."""
    sys.path.insert(0, str(ROOT / "tests" / "lora"))
    from peft_merge import read_gguf_layout
    b = bytearray((ROOT / "tests" / "data" / "lfm2-tiny-dense-f32.gguf").read_bytes())
    ne, typ, off = read_gguf_layout(b)["token_embd_norm.weight"]
    for i in range(ne[0]):
        struct.pack_into("<f", b, off + 4 * i, float("nan"))
    path = tmp_path / "nan.gguf"
    path.write_bytes(bytes(b))
    with lfm2c.Model(str(path), n_threads=1) as m:
        for t in (0, 0.8):
            with pytest.raises(lfm2c.Error) as e:
                m.generate("Hello", 4, temperature=t)
            assert "not finite" in str(e.value)
        with pytest.raises(lfm2c.Error) as e:
            m.embed("Hello")
        assert "not finite" in str(e.value) and e.value.code == lfm2c.EFORMAT


def test_embed_matches_cli(model, model_path, cli):
    texts = ["The quick brown fox", "zebra"]
    for pooling in ("last", "mean"):
        want = [json.loads(l) for l in run_cli(cli, "embed", "-m", model_path, "--pooling", pooling, *texts).splitlines()]
        got = model.embed(texts, pooling=pooling)
        assert len(got) == 2 and all(len(v) == model.n_embd for v in got)
        assert all(abs(a - b) < 1e-6 for v, w in zip(got, want) for a, b in zip(v, w))
    one = model.embed(texts[1])
    assert list(one) == list(model.embed(texts)[1])
    raw = model.embed(texts[0], normalize=False)
    assert abs(sum(x * x for x in raw) ** 0.5 - 1) > 1e-3
    # a session's rows: the last one is the "last" pooling's vector before normalizing
    with model.session(64) as s:
        s.set_embeddings(True)
        s.decode(model.tokenize(texts[0]), logits="all")
        assert list(s.embedding(len(model.tokenize(texts[0])) - 1)) == list(raw)
        with pytest.raises(lfm2c.Error):
            s.logits(0)
    with pytest.raises(lfm2c.Error):
        model.embed("x", pooling="cls")
    with pytest.raises(lfm2c.Error):
        model.embed([])


def test_generate_with_images(cli):
    """A vision model (the tiny LFM2-VL fixture and its mmproj): generate(images=[...]) answers as
    `lfm2c run --raw -mm ... --image ...` does; bytes equal a path; another image, another
    answer; a model without its mmproj refuses images."""
    vd = ROOT / "tests" / "data" / "vision"
    lm, mm, png = str(vd / "lfm2-vl-tiny-f32.gguf"), str(vd / "mmproj-tiny-f32.gguf"), str(vd / "images" / "rgb.png")
    want = run_cli(cli, "run", "-m", lm, "-mm", mm, "--image", png, "-p", "what is it?", "-n", "8", "--temp", "0",
                   "--raw")
    with lfm2c.Model(lm, n_threads=1, mmproj=mm) as m:
        got = m.generate("what is it?", max_tokens=8, temperature=0, images=[png])
        assert got + "\n" == want
        assert m.generate("<image>\nwhat is it?", max_tokens=8, temperature=0, images=[open(png, "rb").read()]) == got
        other = m.generate("what is it?", max_tokens=8, temperature=0, images=[str(vd / "images" / "gray.png")])
        assert other != got
        with pytest.raises(lfm2c.Error, match="not a JPEG, PNG, WebP or GIF"):
            m.generate("x", max_tokens=1, images=[b"not an image"])
    with lfm2c.Model(lm, n_threads=1) as m:
        with pytest.raises(lfm2c.Error, match="mmproj"):
            m.generate("x", max_tokens=1, images=[png])


def _tone(path, rate, secs, freq, channels=1):
    import math
    import wave
    w = wave.open(str(path), "wb")
    w.setnchannels(channels), w.setsampwidth(2), w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate + c)))
                           for i in range(int(rate * secs)) for c in range(channels)))
    w.close()
    return str(path)


def test_audio(cli, tmp_path):
    """An LFM2-Audio model (the tiny synthetic one and its audio mmproj, written by `lfm2c synth`):
    transcribe() gives `lfm2c transcribe`'s text, generate(audio=...) `lfm2c run --raw --audio`'s,
    chat(audio=...) `lfm2c run --audio`'s (special tokens as text); bytes equal a path, the marker
    placed by the prompt equals the one put in front; a session reuses a clip's positions and
    answers the same; another clip answers otherwise; the refusals (no audio mmproj, not audio,
    an image model given audio)."""
    lm, mm = str(tmp_path / "lm.gguf"), str(tmp_path / "mm.gguf")
    run_cli(cli, "synth", "--preset", "lfm2-audio-tiny", "--type", "f32", "-o", lm, "--mmproj", mm, "--mmproj-type",
            "q8_0")
    a, b = _tone(tmp_path / "a.wav", 16000, 1.0, 440), _tone(tmp_path / "b.wav", 44100, 0.7, 660, 2)
    with lfm2c.Model(lm, n_threads=1, mmproj=mm) as m:
        assert m.transcribe(a, max_tokens=8) + "\n" == run_cli(cli, "transcribe", a, "-m", lm, "-mm", mm, "-n", "8")
        want = run_cli(cli, "run", "-m", lm, "-mm", mm, "--audio", a, "-p", "what is it?", "-n", "8", "--temp", "0",
                       "--raw")
        got = m.generate("what is it?", max_tokens=8, temperature=0, audio=a)
        assert got + "\n" == want
        assert m.generate(lfm2c.AUDIO_MARKER + "what is it?", max_tokens=8, temperature=0,
                          audio=[open(a, "rb").read()]) == got
        assert m.generate("what is it?", max_tokens=8, temperature=0, audio=b) != got
        want = run_cli(cli, "run", "-m", lm, "-mm", mm, "--audio", a, "-p", "what is it?", "-n", "8", "--temp", "0",
                       "--special")
        msgs = [{"role": "user", "content": "what is it?"}]
        s = m.session(512)
        first = m.chat(msgs, max_tokens=8, temperature=0, audio=a, session=s)
        assert first["text"] + "\n" == want
        n = s.n_past
        again = m.chat(msgs, max_tokens=8, temperature=0, audio=open(a, "rb").read(), session=s)
        assert again["text"] == first["text"] and n > 8
        with pytest.raises(lfm2c.Error, match="not an audio file"):
            m.transcribe(b"plain text, not audio")
    with lfm2c.Model(lm, n_threads=1) as m:
        with pytest.raises(lfm2c.Error, match="audio mmproj"):
            m.transcribe(a)
    vd = ROOT / "tests" / "data" / "vision"
    with lfm2c.Model(str(vd / "lfm2-vl-tiny-f32.gguf"), n_threads=1, mmproj=str(vd / "mmproj-tiny-f32.gguf")) as m:
        with pytest.raises(lfm2c.Error, match="audio mmproj"):
            m.generate("x", max_tokens=1, audio=a)
    with pytest.raises(lfm2c.Error, match="not an mmproj"):
        lfm2c.Model(lm, n_threads=1, mmproj=lm)
