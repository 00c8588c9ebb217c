"""lfm2c — Python bindings of liblfm2c, the inference engine for Liquid AI's LFM2 models.

Pure Python over the C API (include/lfm2c.h) through ctypes: no compiler, nothing fetched at
install. The engine is liblfm2c.so (see _lib.py for where it is looked for).

    import lfm2c
    model = lfm2c.Model("LFM2-350M-Q4_0.gguf")
    print(model.generate("The capital of France is", max_tokens=16, temperature=0))
    for piece in model.generate("Once upon a time", stream=True):
        print(piece, end="", flush=True)
    reply = model.chat([{"role": "user", "content": "Weather in Paris?"}], tools=[...])
    reply["content"], reply["tool_calls"]
    ears = lfm2c.Model("LFM2-Audio-1.5B-Q8_0.gguf", mmproj="mmproj-LFM2-Audio-1.5B-Q8_0.gguf")
    print(ears.transcribe("speech.wav"))

Errors of the library come out as lfm2c.Error carrying its code and one-line message.
A model may be shared by several sessions, but calls that decode on one model must not run
concurrently (as in C).
"""
import array
import ctypes
import json

from . import _lib
from ._lib import lib

__all__ = ["Error", "Model", "Session", "Sampler", "Constraint", "Lora", "ChatStream", "decode_batch", "parse_tool_calls",
           "render_template", "EIO", "EFORMAT", "EUNSUPPORTED", "ENOMEM", "EINVAL", "ECONTEXT", "ECANCELLED",
           "ETOOLARGE", "AUDIO_MARKER"]
__version__ = "0.1.0"

EIO, EFORMAT, EUNSUPPORTED, ENOMEM, EINVAL, ECONTEXT, ECANCELLED, ETOOLARGE = range(1, 9)
AUDIO_MARKER = "<__media__>"  # LFM2C_AUDIO_MARKER: where a clip stands in a prompt's text
_MMPROJ_IMAGE, _MMPROJ_AUDIO = 1, 2
SAMPLE_NOT_FINITE = -2  # lfm2c_sampler_sample: the logits hold NaN or +inf (Sampler.sample raises)
_LOGITS = {"none": 0, "last": 1, "all": 2}
_POOLING = {"last": 0, "mean": 1}


def _device_names():
    """The device names the library takes (lfm2c_device_name of each LFM2C_DEVICE_*)."""
    names = []
    while lib.lfm2c_device_name(len(names)):
        names.append(lib.lfm2c_device_name(len(names)).decode())
    return names


class Error(Exception):
    """An error of liblfm2c: .code is one of lfm2c.E* (0 when the library gave none), str() its message."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


def _check(err):
    raise Error(err.msg.decode("utf-8", "replace") or "lfm2c: unknown error", err.code)


def _take_string(ptr):
    """A malloc'd char* from the library as str (the memory is freed)."""
    if not ptr:
        raise Error("out of memory", ENOMEM)
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        _lib.free(ptr)


def _take_tokens(ptr, n):
    try:
        return list(ctypes.cast(ptr, _lib.c_int32_p)[:n])
    finally:
        _lib.free(ptr)


def _ids(tokens):
    tokens = list(tokens)
    return (ctypes.c_int32 * max(len(tokens), 1))(*tokens), len(tokens)


def _text_bytes(s):
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def parse_tool_calls(text):
    """LFM2 tool calls in model output (special tokens as text) -> {"content": str, "tool_calls":
    [{"name": str, "arguments": {...}}], "parsed": bool}. Malformed calls never raise: parsed is
    False and content is the whole text."""
    b = _text_bytes(text)
    return json.loads(_take_string(lib.lfm2c_parse_tool_calls(b, len(b))))


def render_template(template, messages, tools=None, add_generation_prompt=True, bos_token="", eos_token=""):
    """Render messages (OpenAI-style list of dicts) with a Jinja chat template given as source."""
    err = _lib.ErrorStruct()
    ptr = lib.lfm2c_chat_render_template(template.encode(), json.dumps(messages).encode(),
                                         json.dumps(tools).encode() if tools is not None else None,
                                         add_generation_prompt, bos_token.encode(), eos_token.encode(),
                                         ctypes.byref(err))
    if not ptr:
        _check(err)
    return _take_string(ptr)


def _audio_list(audio):
    """One clip (bytes or a path) or a list of them, as a list."""
    if audio is None:
        return []
    return list(audio) if isinstance(audio, (list, tuple)) else [audio]


class Model:
    """A GGUF model. Model(path, n_threads=0 (one per core), device="cpu"|"cuda"|"vulkan", reference=False,
    kv_type="f16"|"q8_0"|"f32", mmproj=None (an mmproj file: a vision model's, for generate's images, or an
    LFM2-Audio model's audio encoder, for audio= and transcribe; which one is read from the file)). Use as a
    context manager, or call close(), to free it early.
    Its sessions need it: closed while some are open, the model is unusable at once and freed
    when the last of them closes (in whatever order the garbage collector finalizes them)."""

    def __init__(self, path, n_threads=0, device="cpu", reference=False, kv_type=None, mmproj=None):
        self._m = None
        self._mm = None
        self._amm = None
        self._closed = False
        self._n_sessions = 0
        p = lib.lfm2c_model_default_params()
        p.n_threads = n_threads
        p.reference = reference
        p.device = lib.lfm2c_device_from_name(device.encode()) if isinstance(device, str) else -1
        if p.device < 0:
            raise Error("device must be one of %s, not %r" % (", ".join(_device_names()), device), EINVAL)
        if kv_type is not None:
            t = lib.lfm2c_kv_type_from_name(kv_type.encode())
            if t < 0:
                raise Error("unknown KV cache type %r (f16, q8_0, f32)" % kv_type, EINVAL)
            p.type_k = p.type_v = t
        err = _lib.ErrorStruct()
        m = lib.lfm2c_model_open(str(path).encode(), ctypes.byref(p), ctypes.byref(err))
        if not m:
            _check(err)
        self._m = m
        info = lib.lfm2c_model_get_info(m).contents
        self.arch = info.arch.decode()
        self.name = info.name.decode("utf-8", "replace")
        self.n_vocab, self.n_embd, self.n_layer = info.n_vocab, info.n_embd, info.n_layer
        self.n_ctx_train = info.n_ctx_train
        self.bos_id, self.eos_id, self.add_bos = info.bos_id, info.eos_id, info.add_bos
        self.n_params = info.n_params
        if mmproj is not None:
            kind = lib.lfm2c_mmproj_kind(str(mmproj).encode(), ctypes.byref(err))
            opener = lib.lfm2c_audio_mmproj_open if kind == _MMPROJ_AUDIO else lib.lfm2c_mmproj_open
            mm = opener(str(mmproj).encode(), m, ctypes.byref(err)) if kind > 0 else None
            if not mm:
                self.close()
                _check(err)
            if kind == _MMPROJ_AUDIO:
                self._amm = mm
            else:
                self._mm = mm

    # -- lifetime
    def close(self):
        self._closed = True
        if self._mm:
            lib.lfm2c_mmproj_free(self._mm)
            self._mm = None
        if self._amm:
            lib.lfm2c_audio_mmproj_free(self._amm)
            self._amm = None
        if self._m and self._n_sessions == 0:
            lib.lfm2c_model_free(self._m)
            self._m = None

    def _session_closed(self):
        self._n_sessions -= 1
        if self._closed:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    @property
    def handle(self):
        if not self._m or self._closed:
            raise Error("the model is closed", EINVAL)
        return self._m

    # -- metadata
    def meta(self, key):
        """A GGUF metadata string (e.g. "tokenizer.chat_template"), or None."""
        v = lib.lfm2c_model_meta_str(self.handle, key.encode())
        return v.decode("utf-8", "replace") if v is not None else None

    def is_eog(self, token):
        return bool(lib.lfm2c_token_is_eog(self.handle, token))

    # -- tokenizer
    def tokenize(self, text, add_bos=None, special=True):
        """Token ids of text; add_bos None follows the model file; special: control-token text
        (<|im_start|>, ...) becomes its id."""
        b = _text_bytes(text)
        n = ctypes.c_int(0)
        err = _lib.ErrorStruct()
        ptr = lib.lfm2c_tokenize(self.handle, b, len(b), self.add_bos if add_bos is None else add_bos, special,
                                 ctypes.byref(n), ctypes.byref(err))
        if not ptr:
            _check(err)
        return _take_tokens(ptr, n.value)

    def token_bytes(self, token, special=False):
        """The bytes of one token (special tokens as their text when special, else b"")."""
        buf = ctypes.create_string_buffer(256)
        n = lib.lfm2c_token_to_bytes(self.handle, token, special, buf, len(buf))
        if n > len(buf):
            buf = ctypes.create_string_buffer(n)
            n = lib.lfm2c_token_to_bytes(self.handle, token, special, buf, len(buf))
        if n < 0:
            raise Error("token %d is out of range" % token, EINVAL)
        return buf.raw[:n]

    def detokenize(self, tokens, special=False):
        """Text of tokens (invalid UTF-8 as U+FFFD, as the streaming decoder writes it)."""
        d = _Detok(self, special)
        return "".join(d.push(t) for t in tokens) + d.flush()

    # -- chat
    def render_chat(self, messages, tools=None, add_generation_prompt=True, template=None):
        """The prompt for messages (and tools) rendered with the model's chat template (or template)."""
        err = _lib.ErrorStruct()
        ptr = lib.lfm2c_chat_render(self.handle, template.encode() if template is not None else None,
                                    json.dumps(messages).encode(),
                                    json.dumps(tools).encode() if tools is not None else None,
                                    add_generation_prompt, ctypes.byref(err))
        if not ptr:
            _check(err)
        return _take_string(ptr)

    def _guard(self, s):
        b = s.encode("utf-8")
        n = ctypes.c_size_t(0)
        ptr = lib.lfm2c_guard_text(self.handle, b, len(b), ctypes.byref(n))
        if not ptr:
            raise Error("out of memory", ENOMEM)
        try:
            return ctypes.string_at(ptr, n.value).decode("utf-8")
        finally:
            _lib.free(ptr)

    def _chat_text(self, messages, tools=None, template=None, n_clips=0):
        """The rendered prompt with every string content guarded; n_clips audio markers (not
        guarded: the prompt is split there) in front of the last user message's text."""
        guarded = [dict(m, content=self._guard(m["content"])) if isinstance(m.get("content"), str) else m
                   for m in messages]
        if n_clips:
            last = max((i for i, m in enumerate(guarded) if m.get("role") == "user"), default=None)
            if last is None or not isinstance(guarded[last].get("content", ""), str):
                raise Error("audio goes with a user message whose content is text", EINVAL)
            guarded[last] = dict(guarded[last], content=AUDIO_MARKER * n_clips + guarded[last].get("content", ""))
        return self.render_chat(guarded, tools, True, template)

    def chat_tokens(self, messages, tools=None, template=None):
        """The prompt tokens of a conversation: every string content of messages is guarded
        (a user who writes "<|im_end|>" gets text, not a control token), the template's own
        markers stay special."""
        prompt = self._chat_text(messages, tools, template).encode("utf-8")
        n = ctypes.c_int(0)
        err = _lib.ErrorStruct()
        ptr = lib.lfm2c_tokenize_prompt(self.handle, prompt, len(prompt), False, ctypes.byref(n), ctypes.byref(err))
        if not ptr:
            _check(err)
        return _take_tokens(ptr, n.value)

    def chat(self, messages, tools=None, max_tokens=512, stream=False, template=None, session=None,
             json_schema=None, regex=None, choices=None, audio=None, **sampling):
        """One assistant turn: {"content", "tool_calls", "parsed", "text"} (text: the raw reply,
        special tokens as text). stream=True returns a ChatStream: iterate it for the text as it
        comes, then read .result. A session given keeps the conversation's prefix between turns
        (only the new part of the prompt is computed). Sampling options and json_schema / regex /
        choices as for generate. audio: a clip (bytes or a path: WAV, FLAC, MP3, Ogg) or a list of
        them for an LFM2-Audio model opened with its audio mmproj, heard in front of the last user
        message's text."""
        clips = _audio_list(audio)
        rows = None
        if clips:
            ids, rows = self._audio_prompt(self._chat_text(messages, tools, template, len(clips)), clips, False)
        else:
            ids = self.chat_tokens(messages, tools, template)
        if session is None:
            session = Session(self, min(len(ids) + max_tokens, self.n_ctx_train or len(ids) + max_tokens))
        if rows is None:
            session.sync(ids)
        else:
            try:
                session._sync_embd(ids, rows)
            finally:
                _lib.free(rows)
        cs = ChatStream(self, session, Sampler(self, **sampling), max_tokens,
                        Constraint.of(self, json_schema, regex, choices))
        if stream:
            return cs
        for _ in cs:
            pass
        return cs.result

    # -- generation
    def load_lora(self, path):
        """A LoRA adapter for this model (a PEFT folder or a GGUF adapter)."""
        return Lora(self, path)

    def _with_images(self, ids, images):
        """ids with each image placeholder expanded (lfm2c_prompt_images) and the images' rows
        (a C pointer the caller frees)."""
        if not self._mm:
            raise Error("images need a vision model's mmproj: Model(path, mmproj=FILE)", EINVAL)
        handles = []
        try:
            for im in images:
                data = im if isinstance(im, (bytes, bytearray)) else open(im, "rb").read()
                err = _lib.ErrorStruct()
                h = lib.lfm2c_image_encode(self._mm, bytes(data), len(data), None, ctypes.byref(err))
                if not h:
                    _check(err)
                handles.append(h)
            buf, n = _ids(ids)
            arr = (_lib._P * len(handles))(*handles)
            out, n_out, rows = _lib.c_int32_p(), ctypes.c_int(0), _lib.c_float_p()
            err = _lib.ErrorStruct()
            if lib.lfm2c_prompt_images(self.handle, buf, n, arr, len(handles), ctypes.byref(out), ctypes.byref(n_out),
                                       ctypes.byref(rows), ctypes.byref(err)):
                _check(err)
            return _take_tokens(out, n_out.value), rows
        finally:
            for h in handles:
                lib.lfm2c_image_free(h)

    def _encode_audio(self, clips):
        """Each clip (bytes, or a path) decoded and encoded with the audio mmproj: the handles."""
        if not self._amm:
            raise Error("audio needs an LFM2-Audio model's audio mmproj: Model(path, mmproj=FILE)", EINVAL)
        handles = []
        try:
            for c in clips:
                data = bytes(c) if isinstance(c, (bytes, bytearray, memoryview)) else open(c, "rb").read()
                err = _lib.ErrorStruct()
                h = lib.lfm2c_audio_encode(self._amm, data, len(data), None, None, None, ctypes.byref(err))
                if not h:
                    _check(err)
                handles.append(h)
        except BaseException:
            for h in handles:
                lib.lfm2c_audio_free(h)
            raise
        return handles

    def _audio_prompt(self, text, clips, add_bos):
        """text split at its markers (AUDIO_MARKER) and tokenized, each marker the next clip's
        rows (lfm2c_prompt_audio): the ids and the rows (a C pointer the caller frees)."""
        handles = self._encode_audio(clips)
        try:
            b = text.encode("utf-8")
            arr = (_lib._P * len(handles))(*handles)
            out, n_out, rows = _lib.c_int32_p(), ctypes.c_int(0), _lib.c_float_p()
            err = _lib.ErrorStruct()
            if lib.lfm2c_prompt_audio(self.handle, b, len(b), add_bos, arr, len(handles), ctypes.byref(out),
                                      ctypes.byref(n_out), ctypes.byref(rows), ctypes.byref(err)):
                _check(err)
            return _take_tokens(out, n_out.value), rows
        finally:
            for h in handles:
                lib.lfm2c_audio_free(h)

    def transcribe(self, audio, max_tokens=512, system="Perform ASR.", **sampling):
        """The speech of an audio clip (bytes or a path: WAV, FLAC, MP3, Ogg Vorbis / Opus, any
        rate and channels) as text, with an LFM2-Audio model opened with its audio mmproj, as its
        model card runs ASR: the system prompt "Perform ASR.", the clip alone as the user's turn,
        greedy unless a temperature is given. The same text as `lfm2c transcribe`."""
        sampling.setdefault("temperature", 0)
        text = self._chat_text([{"role": "system", "content": system}, {"role": "user", "content": ""}], n_clips=1)
        ids, rows = self._audio_prompt(text, [audio], False)
        s = Session(self, min(len(ids) + max_tokens, max(self.n_ctx_train, len(ids) + 1)))
        try:
            s._decode_embd(ids, rows)
        finally:
            _lib.free(rows)
        return "".join(_stream_text(self, s, Sampler(self, **sampling), max_tokens, False))

    def generate(self, prompt, max_tokens=256, stream=False, add_bos=None, special=False, n_ctx=None, lora=None,
                 json_schema=None, regex=None, choices=None, images=None, audio=None, **sampling):
        """The continuation of prompt (str, or a list of token ids), at most max_tokens tokens, up
        to an end-of-generation token. stream=True: an iterator of text pieces instead. Sampling:
        temperature (0 = greedy), top_k, top_p, min_p, repeat_penalty, repeat_last_n,
        presence_penalty, frequency_penalty, seed; unset ones are the model file's defaults.
        lora: adapters to run with (as Session.set_lora takes them). At most one of json_schema
        (a dict or its JSON text), regex (matched as a whole) or choices (a list of strings) holds
        the output to it (Constraint). images: image files (paths or bytes: JPEG, PNG, WebP, GIF)
        for a vision model opened with mmproj; each "<image>" in a str prompt is one, else one
        "<image>" per image is put in front. audio: a clip (bytes or a path: WAV, FLAC, MP3, Ogg
        Vorbis / Opus) or a list of them for an LFM2-Audio model opened with its audio mmproj; each
        AUDIO_MARKER ("<__media__>") in a str prompt is one, else one marker per clip is put in
        front (as `lfm2c run --audio`)."""
        clips = _audio_list(audio)
        if images and isinstance(prompt, (str, bytes)):
            text = prompt.decode("utf-8") if isinstance(prompt, bytes) else prompt
            prompt = text if "<image>" in text else "<image>\n" * len(images) + text
        rows = None
        if clips:
            if images or not isinstance(prompt, (str, bytes)):
                raise Error("audio goes with a text prompt (its markers place the clips), without images", EINVAL)
            text = prompt.decode("utf-8") if isinstance(prompt, bytes) else prompt
            text = text if AUDIO_MARKER in text else AUDIO_MARKER * len(clips) + text
            ids, rows = self._audio_prompt(text, clips, self.add_bos if add_bos is None else add_bos)
        else:
            ids = list(prompt) if not isinstance(prompt, (str, bytes)) else self.tokenize(prompt, add_bos)
        if not ids:
            raise Error("empty prompt", EINVAL)
        if images:
            ids, rows = self._with_images(ids, images)
        s = Session(self, n_ctx or min(len(ids) + max_tokens, max(self.n_ctx_train, len(ids) + 1)))
        if lora is not None:
            s.set_lora(lora)
        if rows is None:
            s.decode(ids)
        else:
            try:
                s._decode_embd(ids, rows)
            finally:
                _lib.free(rows)
        c = Constraint.of(self, json_schema, regex, choices)
        pieces = _stream_text(self, s, Sampler(self, **sampling), max_tokens, special, c)
        return pieces if stream else "".join(pieces)

    def generate_batch(self, prompts, max_tokens=256, special=False, **sampling):
        """Continuations of several prompts decoded together: all prefills in one forward, then one
        token of every running sequence per forward. Each answer equals generate's for its prompt
        (with the same sampling)."""
        seqs = []
        for p in prompts:
            ids = self.tokenize(p)
            s = Session(self, len(ids) + max_tokens + 1)
            seqs.append([s, Sampler(self, **sampling), _Detok(self, special), ids, [], max_tokens > 0])
        if not seqs:
            return []
        decode_batch([q[0] for q in seqs], [q[3] for q in seqs])
        while True:
            run = []
            for q in seqs:
                if not q[5]:
                    continue
                tok = q[1].sample(q[0])
                if tok < 0 or self.is_eog(tok):
                    q[5] = False
                    continue
                q[4].append(q[2].push(tok))
                if len(q[4]) >= max_tokens:
                    q[5] = False
                    continue
                run.append((q[0], [tok]))
            if not run:
                break
            decode_batch([r[0] for r in run], [r[1] for r in run])
        return ["".join(q[4]) + q[2].flush() for q in seqs]

    # -- embeddings
    def embed(self, texts, pooling="last", normalize=True, add_bos=None):
        """The embedding of a text (str, or a list of token ids) as array('f') of n_embd values, or
        of each text of a list of str, as a list of them: the hidden state the output head reads,
        of the last token ("last") or the mean over the tokens ("mean"), unit length unless
        normalize=False. The same vectors as `lfm2c embed` and the server's /v1/embeddings."""
        many = isinstance(texts, (list, tuple)) and texts and all(isinstance(t, str) for t in texts)
        ids = [self.tokenize(t, add_bos) if isinstance(t, str) else list(t) for t in (texts if many else [texts])]
        if pooling not in _POOLING:
            raise Error("pooling must be 'last' or 'mean', not %r" % (pooling,), EINVAL)
        if not all(ids):
            raise Error("nothing to embed", EINVAL)
        s, out = Session(self, max(len(t) for t in ids)), []
        try:
            for t in ids:
                buf, n = _ids(t)
                vec, err = (ctypes.c_float * self.n_embd)(), _lib.ErrorStruct()
                if lib.lfm2c_embed(s.handle, buf, n, _POOLING[pooling], normalize, vec, ctypes.byref(err)):
                    _check(err)
                out.append(array.array("f", bytes(vec)))
        finally:
            s.close()
        return out if many else out[0]

    def session(self, n_ctx=None):
        """A new session (KV cache + conv state) of n_ctx positions (default: the trained context)."""
        return Session(self, n_ctx or self.n_ctx_train)


class Session:
    """One sequence's state on a model: feed tokens, read logits."""

    def __init__(self, model, n_ctx):
        self._s = None
        self.model = model
        err = _lib.ErrorStruct()
        s = lib.lfm2c_session_new(model.handle, n_ctx, ctypes.byref(err))
        if not s:
            _check(err)
        self._s = s
        model._n_sessions += 1

    def close(self):
        if self._s:
            lib.lfm2c_session_free(self._s)
            self._s = None
            self.model._session_closed()

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def handle(self):
        if not self._s:
            raise Error("the session is closed", EINVAL)
        return self._s

    @property
    def n_ctx(self):
        return lib.lfm2c_session_n_ctx(self.handle)

    @property
    def n_past(self):
        return lib.lfm2c_session_n_past(self.handle)

    @property
    def tokens(self):
        """The tokens fed so far."""
        n = self.n_past
        return list(lib.lfm2c_session_tokens(self.handle)[:n]) if n else []

    def decode(self, tokens, logits="last"):
        """Feed tokens (logits: "last", "all" or "none")."""
        buf, n = _ids(tokens)
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_decode(self.handle, buf, n, _LOGITS[logits], ctypes.byref(err)):
            _check(err)

    def _sync_embd(self, tokens, rows):
        """sync() of a prompt with embedding rows (ids below 0 take the next row): the rows of
        the positions kept are skipped."""
        buf, n = _ids(tokens)
        reused = ctypes.c_int(0)
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_sync(self.handle, buf, n, ctypes.byref(reused), ctypes.byref(err)):
            _check(err)
        tokens = list(tokens)
        rest = tokens[reused.value:]
        if rest:
            skip = sum(1 for t in tokens[:reused.value] if t < 0) * self.model.n_embd * 4
            self._decode_embd(rest, ctypes.cast(ctypes.cast(rows, ctypes.c_void_p).value + skip, _lib.c_float_p))
        return reused.value

    def _decode_embd(self, tokens, rows, logits="last"):
        buf, n = _ids(tokens)
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_decode_embd(self.handle, buf, rows, n, _LOGITS[logits], ctypes.byref(err)):
            _check(err)

    def logits(self, row=0):
        """Row `row` of the last decode's logits, as array('f') of n_vocab values."""
        if row < 0 or row >= lib.lfm2c_session_n_logits_rows(self.handle):
            raise Error("no logits row %d (the last decode produced %d)"
                        % (row, lib.lfm2c_session_n_logits_rows(self.handle)), EINVAL)
        p = lib.lfm2c_session_logits(self.handle, row)
        if not p:
            raise Error("an embedding session's rows are embeddings (embedding(row)), not logits", EINVAL)
        return array.array("f", ctypes.string_at(p, self.model.n_vocab * 4))

    def set_embeddings(self, on=True):
        """From now on the rows of a decode are embeddings (the final norm's output, n_embd
        values: embedding(row)) instead of logits; the cache is kept."""
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_set_embeddings(self.handle, on, ctypes.byref(err)):
            _check(err)

    def embedding(self, row=0):
        """Row `row` of the last decode of an embedding session, as array('f') of n_embd values."""
        p = lib.lfm2c_session_embedding(self.handle, row)
        if not p:
            raise Error("no embedding row %d (set_embeddings(True) before the decode)" % row, EINVAL)
        return array.array("f", ctypes.string_at(p, self.model.n_embd * 4))

    def reset(self):
        lib.lfm2c_session_reset(self.handle)

    def truncate(self, n_keep):
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_truncate(self.handle, n_keep, ctypes.byref(err)):
            _check(err)

    def checkpoint(self):
        lib.lfm2c_session_checkpoint(self.handle)

    def set_checkpoints(self, every=0, max=16, logits=0):
        """The checkpoint policy (lfm2c_session_set_checkpoints): one every `every` positions taken
        inside the forward (0: only checkpoint()'s), at most `max`, and `logits` explicit ones
        keeping their logits row (so that sync() of a prompt held whole feeds nothing)."""
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_set_checkpoints(self.handle, every, max, logits, ctypes.byref(err)):
            _check(err)

    def checkpoint_usage(self):
        """(count, bytes) of the checkpoints this session holds."""
        count, size = ctypes.c_int(0), ctypes.c_size_t(0)
        lib.lfm2c_session_checkpoint_usage(self.handle, ctypes.byref(count), ctypes.byref(size))
        return count.value, size.value

    def sync(self, tokens):
        """Resume at the newest checkpoint within the prefix of tokens this session holds, feed the
        rest; returns the number of tokens kept (not computed again)."""
        buf, n = _ids(tokens)
        reused = ctypes.c_int(0)
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_sync(self.handle, buf, n, ctypes.byref(reused), ctypes.byref(err)):
            _check(err)
        rest = list(tokens)[reused.value:]
        if rest:
            self.decode(rest)
        return reused.value

    def set_lora(self, loras):
        """Run with these adapters from now on: a Lora, or a list of Lora / (Lora, scale); [] or
        None removes them. A change resets the session (its cache came from other weights)."""
        if loras is None:
            loras = []
        elif isinstance(loras, (Lora, tuple)):
            loras = [loras]
        pairs = [x if isinstance(x, tuple) else (x, 1.0) for x in loras]
        k = len(pairs)
        L = (ctypes.c_void_p * max(k, 1))(*[p[0].handle for p in pairs])
        F = (ctypes.c_float * max(k, 1))(*[p[1] for p in pairs])
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_set_lora(self.handle, L, F, k, ctypes.byref(err)):
            _check(err)
        self._loras = [p[0] for p in pairs]   # they must outlive their use

    def copy_from(self, other):
        """Become an exact copy of other (same model, CPU sessions)."""
        err = _lib.ErrorStruct()
        if lib.lfm2c_session_copy(self.handle, other.handle, ctypes.byref(err)):
            _check(err)


class Lora:
    """A LoRA adapter loaded for one model (Model.load_lora); used through Session.set_lora or
    generate(lora=...)."""

    def __init__(self, model, path):
        self._l = None
        self.model = model
        err = _lib.ErrorStruct()
        h = lib.lfm2c_lora_load(model.handle, str(path).encode(), ctypes.byref(err))
        if not h:
            _check(err)
        self._l = h

    @property
    def handle(self):
        if not self._l:
            raise Error("the adapter is closed", EINVAL)
        return self._l

    @property
    def n_matrices(self):
        """The adapted (layer, module) matrices."""
        return lib.lfm2c_lora_n_matrices(self.handle)

    def describe(self):
        """What the adapter changes, in one line (modules, layers, rank and scale), as `-v` prints it."""
        n = lib.lfm2c_lora_describe(self.handle, None, 0)
        buf = ctypes.create_string_buffer(max(n, 0) + 1)
        lib.lfm2c_lora_describe(self.handle, buf, len(buf))
        return buf.value.decode()

    def close(self):
        """Frees the adapter: only once no session runs with it (a session keeps the adapters it
        was given alive, so dropping the references is always safe)."""
        if self._l:
            lib.lfm2c_lora_free(self._l)
            self._l = None

    def __del__(self):
        self.close()


def decode_batch(sessions, tokens, logits="last"):
    """Several sessions in one forward: sessions[i] is fed tokens[i]; answers equal separate decodes."""
    k = len(sessions)
    if k != len(tokens):
        raise Error("decode_batch: %d sessions but %d token lists" % (k, len(tokens)), EINVAL)
    bufs = [_ids(t) for t in tokens]
    S = (ctypes.c_void_p * k)(*[s.handle for s in sessions])
    T = (_lib.c_int32_p * k)(*[ctypes.cast(b[0], _lib.c_int32_p) for b in bufs])
    N = (ctypes.c_int * k)(*[b[1] for b in bufs])
    M = (ctypes.c_int * k)(*([_LOGITS[logits]] * k))
    err = _lib.ErrorStruct()
    if lib.lfm2c_decode_batch(S, T, N, M, k, ctypes.byref(err)):
        _check(err)


class Sampler:
    """Chooses the next token from a session's last logits. Options left None are the model
    file's defaults (else Liquid's recommendation); temperature 0 is greedy."""

    _OPTIONS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
                "presence_penalty", "frequency_penalty", "seed")

    def __init__(self, model, **options):
        self._p = None
        p = lib.lfm2c_sampler_params_for_model(model.handle)
        for k, v in options.items():
            if k not in self._OPTIONS:
                raise TypeError("unknown sampling option %r (%s)" % (k, ", ".join(self._OPTIONS)))
            if v is not None:
                setattr(p, k, v)
        self._p = lib.lfm2c_sampler_new(ctypes.byref(p), model.n_vocab)
        if not self._p:
            raise Error("out of memory", ENOMEM)

    def close(self):
        if self._p:
            lib.lfm2c_sampler_free(self._p)
            self._p = None

    def __del__(self):
        self.close()

    def constrain(self, constraint):
        """Sample only what constraint (a Constraint, or None: nothing) allows from now on."""
        self._constraint = constraint  # it must outlive its use
        fn = ctypes.cast(lib.lfm2c_constraint_filter, ctypes.c_void_p) if constraint is not None else None
        lib.lfm2c_sampler_set_filter(self._p, fn, constraint.handle if constraint is not None else None)

    def sample(self, session):
        """The next token after session's last decode (-1 when no token is left). Raises Error
        when the logits are not finite (a model's or an adapter's weights overflow)."""
        h = session.handle
        t = lib.lfm2c_sampler_sample(self._p, lib.lfm2c_session_logits(h, 0), lib.lfm2c_session_tokens(h),
                                     lib.lfm2c_session_n_past(h))
        if t == SAMPLE_NOT_FINITE:
            raise Error("the model's logits are not finite (NaN or infinity): its weights, or an adapter's, overflow",
                        EFORMAT)
        return t


class Constraint:
    """The output held to a JSON schema (a dict or its JSON text), a regular expression matched as
    a whole, or one of a list of strings: the server's constrained decoding for a program's own
    loop (Sampler.constrain, then accept each token sampled; stop when done)."""

    def __init__(self, model, json_schema=None, regex=None, choices=None):
        self._c = None
        if sum(x is not None for x in (json_schema, regex, choices)) != 1:
            raise TypeError("give one of json_schema, regex or choices")
        self.model = model
        err = _lib.ErrorStruct()
        if json_schema is not None:
            text = json_schema if isinstance(json_schema, (str, bytes)) else json.dumps(json_schema)
            self._c = lib.lfm2c_constraint_schema(model.handle, _text_bytes(text), ctypes.byref(err))
        elif regex is not None:
            b = _text_bytes(regex)
            self._c = lib.lfm2c_constraint_regex(model.handle, b, len(b), ctypes.byref(err))
        else:
            items = [_text_bytes(c) for c in choices]
            arr = (ctypes.c_char_p * max(len(items), 1))(*items)
            self._c = lib.lfm2c_constraint_choices(model.handle, arr, len(items), ctypes.byref(err))
        if not self._c:
            _check(err)

    @classmethod
    def of(cls, model, json_schema=None, regex=None, choices=None):
        """A Constraint when one of the three is given, else None."""
        if json_schema is None and regex is None and choices is None:
            return None
        return cls(model, json_schema, regex, choices)

    @property
    def handle(self):
        if not self._c:
            raise Error("the constraint is closed", EINVAL)
        return self._c

    def accept(self, token):
        """Feed the token sampled (lfm2c.Error when it was not allowed)."""
        err = _lib.ErrorStruct()
        if lib.lfm2c_constraint_accept(self.handle, token, ctypes.byref(err)):
            _check(err)

    @property
    def done(self):
        """The output is complete: nothing may follow."""
        return bool(lib.lfm2c_constraint_done(self.handle))

    def reset(self):
        lib.lfm2c_constraint_reset(self.handle)

    def close(self):
        if self._c:
            lib.lfm2c_constraint_free(self._c)
            self._c = None

    def __del__(self):
        self.close()


class _Detok:
    """The streaming decoder: whole UTF-8 characters only."""

    def __init__(self, model, special):
        self.model = model
        self.d = _lib.Detok()
        lib.lfm2c_detok_init(ctypes.byref(self.d), special)
        self.buf = ctypes.create_string_buffer(64 + 4096)

    def _out(self, n):
        if n > len(self.buf):
            raise Error("a token longer than the decode buffer", EINVAL)
        return self.buf.raw[:n].decode("utf-8", "replace")

    def push(self, token):
        return self._out(lib.lfm2c_detok_push(ctypes.byref(self.d), self.model.handle, token, self.buf, len(self.buf)))

    def flush(self):
        return self._out(lib.lfm2c_detok_flush(ctypes.byref(self.d), self.buf, len(self.buf)))


def _stream_text(model, session, sampler, max_tokens, special, constraint=None):
    d = _Detok(model, special)
    if constraint is not None:
        sampler.constrain(constraint)
    for i in range(max_tokens):
        if session.n_past >= session.n_ctx:
            break
        tok = sampler.sample(session)
        if tok < 0 or model.is_eog(tok):
            break
        if constraint is not None:
            constraint.accept(tok)
        piece = d.push(tok)
        if piece:
            yield piece
        if constraint is not None and constraint.done:
            break
        if i + 1 < max_tokens:
            session.decode([tok])
    tail = d.flush()
    if tail:
        yield tail


class ChatStream:
    """An assistant turn being generated: iterate for text pieces (special tokens as text, so
    tool-call markup shows); .result then holds the parsed turn."""

    def __init__(self, model, session, sampler, max_tokens, constraint=None):
        self.session = session
        self.result = None
        self._pieces = []
        self._it = _stream_text(model, session, sampler, max_tokens, True, constraint)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            piece = next(self._it)
        except StopIteration:
            if self.result is None:
                text = "".join(self._pieces)
                self.result = dict(parse_tool_calls(text), text=text)
            raise
        self._pieces.append(piece)
        return piece
