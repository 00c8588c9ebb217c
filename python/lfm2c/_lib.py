"""_lib.py — finds and loads liblfm2c.so and declares the C API of include/lfm2c.h to ctypes.

The library is looked for in this order: the file LFM2C_LIB names (nothing else is tried when it
is set); a copy bundled beside this file when the package was built with LFM2C_BUNDLE_LIB; the
system's loader (ldconfig's cache, LD_LIBRARY_PATH), as liblfm2c.so.0 then liblfm2c.so; then
where `cmake --install build --prefix P` put it for P = ~/.local, this interpreter's prefix (a
venv) and /usr/local. `path` is the one loaded. The
struct layouts below mirror lfm2c.h field for field; python/tests/test_lfm2c.py checks them against the
library's own answers.
"""
import ctypes
import os
import sys
import sysconfig

c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_float_p = ctypes.POINTER(ctypes.c_float)

MAX_LAYERS = 256


class ErrorStruct(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


class ModelParams(ctypes.Structure):
    _fields_ = [("n_threads", ctypes.c_int), ("reference", ctypes.c_bool), ("device", ctypes.c_int),
                ("no_populate", ctypes.c_bool), ("hugepages", ctypes.c_int),
                ("type_k", ctypes.c_int), ("type_v", ctypes.c_int), ("shared_threads", ctypes.c_bool)]


class ModelInfo(ctypes.Structure):
    _fields_ = [("arch", ctypes.c_char * 32), ("name", ctypes.c_char * 128)] + \
        [(n, ctypes.c_int) for n in ("n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv_max", "head_dim",
                                     "n_ctx_train", "n_ff", "n_expert", "n_expert_used", "n_ff_exp",
                                     "n_dense_lead", "conv_l_cache")] + \
        [("rope_theta", ctypes.c_float), ("norm_eps", ctypes.c_float),
         ("is_attention", ctypes.c_bool * MAX_LAYERS), ("is_moe", ctypes.c_bool * MAX_LAYERS),
         ("n_head_kv", ctypes.c_int * MAX_LAYERS), ("file_type", ctypes.c_int)] + \
        [(n, ctypes.c_uint64) for n in ("n_params", "n_params_active", "weight_bytes", "weight_bytes_active")] + \
        [("bos_id", ctypes.c_int), ("eos_id", ctypes.c_int), ("pad_id", ctypes.c_int), ("add_bos", ctypes.c_bool),
         ("def_temp", ctypes.c_float), ("def_top_p", ctypes.c_float), ("def_min_p", ctypes.c_float),
         ("def_repeat_penalty", ctypes.c_float), ("def_top_k", ctypes.c_int),
         ("weights_copied", ctypes.c_bool), ("weights_packed", ctypes.c_int)]


class SamplerParams(ctypes.Structure):
    _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float), ("repeat_last_n", ctypes.c_int),
                ("presence_penalty", ctypes.c_float), ("frequency_penalty", ctypes.c_float),
                ("seed", ctypes.c_uint64)]


class Detok(ctypes.Structure):
    _fields_ = [("pending", ctypes.c_char * 8), ("n_pending", ctypes.c_int), ("special", ctypes.c_bool)]


_P = ctypes.c_void_p
_E = ctypes.POINTER(ErrorStruct)
# name: (restype, argtypes)
_API = {
    "lfm2c_model_default_params": (ModelParams, []),
    "lfm2c_model_open": (_P, [ctypes.c_char_p, ctypes.POINTER(ModelParams), _E]),
    "lfm2c_model_free": (None, [_P]),
    "lfm2c_model_get_info": (ctypes.POINTER(ModelInfo), [_P]),
    "lfm2c_model_meta_str": (ctypes.c_char_p, [_P, ctypes.c_char_p]),
    "lfm2c_kv_type_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "lfm2c_device_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "lfm2c_device_name": (ctypes.c_char_p, [ctypes.c_int]),
    "lfm2c_token_is_eog": (ctypes.c_bool, [_P, ctypes.c_int32]),
    "lfm2c_vocab_size": (ctypes.c_int, [_P]),
    "lfm2c_session_new": (_P, [_P, ctypes.c_int, _E]),
    "lfm2c_session_free": (None, [_P]),
    "lfm2c_session_n_ctx": (ctypes.c_int, [_P]),
    "lfm2c_session_n_past": (ctypes.c_int, [_P]),
    "lfm2c_session_tokens": (c_int32_p, [_P]),
    "lfm2c_session_decode": (ctypes.c_int, [_P, c_int32_p, ctypes.c_int, ctypes.c_int, _E]),
    "lfm2c_session_logits": (c_float_p, [_P, ctypes.c_int]),
    "lfm2c_session_decode_embd": (ctypes.c_int, [_P, c_int32_p, c_float_p, ctypes.c_int, ctypes.c_int, _E]),
    "lfm2c_mmproj_open": (_P, [ctypes.c_char_p, _P, _E]),
    "lfm2c_mmproj_free": (None, [_P]),
    "lfm2c_image_encode": (_P, [_P, ctypes.c_char_p, ctypes.c_size_t, _P, _E]),
    "lfm2c_image_free": (None, [_P]),
    "lfm2c_prompt_images": (ctypes.c_int, [_P, c_int32_p, ctypes.c_int, ctypes.POINTER(_P), ctypes.c_int,
                                           ctypes.POINTER(c_int32_p), ctypes.POINTER(ctypes.c_int),
                                           ctypes.POINTER(c_float_p), _E]),
    "lfm2c_mmproj_kind": (ctypes.c_int, [ctypes.c_char_p, _E]),
    "lfm2c_audio_mmproj_open": (_P, [ctypes.c_char_p, _P, _E]),
    "lfm2c_audio_mmproj_free": (None, [_P]),
    "lfm2c_audio_encode": (_P, [_P, ctypes.c_char_p, ctypes.c_size_t, _P, _P, _P, _E]),
    "lfm2c_audio_free": (None, [_P]),
    "lfm2c_audio_seconds": (ctypes.c_double, [_P]),
    "lfm2c_prompt_audio": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool, ctypes.POINTER(_P),
                                          ctypes.c_int, ctypes.POINTER(c_int32_p), ctypes.POINTER(ctypes.c_int),
                                          ctypes.POINTER(c_float_p), _E]),
    "lfm2c_session_n_logits_rows": (ctypes.c_int, [_P]),
    "lfm2c_session_set_embeddings": (ctypes.c_int, [_P, ctypes.c_bool, _E]),
    "lfm2c_session_embedding": (c_float_p, [_P, ctypes.c_int]),
    "lfm2c_embed": (ctypes.c_int, [_P, c_int32_p, ctypes.c_int, ctypes.c_int, ctypes.c_bool, c_float_p, _E]),
    "lfm2c_session_reset": (None, [_P]),
    "lfm2c_session_truncate": (ctypes.c_int, [_P, ctypes.c_int, _E]),
    "lfm2c_session_sync": (ctypes.c_int, [_P, c_int32_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int), _E]),
    "lfm2c_session_checkpoint": (None, [_P]),
    "lfm2c_session_set_checkpoints": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_int, ctypes.c_int, _E]),
    "lfm2c_session_checkpoint_usage": (None, [_P, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t)]),
    "lfm2c_session_copy": (ctypes.c_int, [_P, _P, _E]),
    "lfm2c_lora_load": (_P, [_P, ctypes.c_char_p, _E]),
    "lfm2c_lora_free": (None, [_P]),
    "lfm2c_lora_n_matrices": (ctypes.c_int, [_P]),
    "lfm2c_lora_describe": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t]),
    "lfm2c_session_set_lora": (ctypes.c_int, [_P, ctypes.POINTER(_P), c_float_p, ctypes.c_int, _E]),
    "lfm2c_decode_batch": (ctypes.c_int, [ctypes.POINTER(_P), ctypes.POINTER(c_int32_p), ctypes.POINTER(ctypes.c_int),
                                          ctypes.POINTER(ctypes.c_int), ctypes.c_int, _E]),
    "lfm2c_tokenize": (_P, [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool, ctypes.c_bool,
                            ctypes.POINTER(ctypes.c_int), _E]),
    "lfm2c_tokenize_prompt": (_P, [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool,
                                   ctypes.POINTER(ctypes.c_int), _E]),
    "lfm2c_guard_text": (_P, [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
    "lfm2c_token_to_bytes": (ctypes.c_int, [_P, ctypes.c_int32, ctypes.c_bool, ctypes.c_char_p, ctypes.c_int]),
    "lfm2c_detok_init": (None, [ctypes.POINTER(Detok), ctypes.c_bool]),
    "lfm2c_detok_push": (ctypes.c_int, [ctypes.POINTER(Detok), _P, ctypes.c_int32, ctypes.c_char_p, ctypes.c_int]),
    "lfm2c_detok_flush": (ctypes.c_int, [ctypes.POINTER(Detok), ctypes.c_char_p, ctypes.c_int]),
    "lfm2c_sampler_default_params": (SamplerParams, []),
    "lfm2c_sampler_params_for_model": (SamplerParams, [_P]),
    "lfm2c_sampler_new": (_P, [ctypes.POINTER(SamplerParams), ctypes.c_int]),
    "lfm2c_sampler_free": (None, [_P]),
    "lfm2c_sampler_sample": (ctypes.c_int32, [_P, c_float_p, c_int32_p, ctypes.c_int]),
    "lfm2c_sampler_set_filter": (None, [_P, _P, _P]),
    "lfm2c_constraint_schema": (_P, [_P, ctypes.c_char_p, _E]),
    "lfm2c_constraint_regex": (_P, [_P, ctypes.c_char_p, ctypes.c_size_t, _E]),
    "lfm2c_constraint_choices": (_P, [_P, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, _E]),
    "lfm2c_constraint_free": (None, [_P]),
    "lfm2c_constraint_mask": (ctypes.c_int, [_P, c_float_p, ctypes.c_int]),
    "lfm2c_constraint_filter": (None, [_P, c_float_p, ctypes.c_int]),
    "lfm2c_constraint_accept": (ctypes.c_int, [_P, ctypes.c_int32, _E]),
    "lfm2c_constraint_done": (ctypes.c_bool, [_P]),
    "lfm2c_constraint_reset": (None, [_P]),
    "lfm2c_chat_render": (_P, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool, _E]),
    "lfm2c_chat_render_template": (_P, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool,
                                        ctypes.c_char_p, ctypes.c_char_p, _E]),
    "lfm2c_parse_tool_calls": (_P, [ctypes.c_char_p, ctypes.c_size_t]),
}


def _prefix_libs():
    """liblfm2c.so where `cmake --install build --prefix P` puts it, for the prefixes a user
    installs into without root (~/.local: the README's) and this interpreter's own (a venv),
    then /usr/local: P/lib, P/lib64 or P/lib/<multiarch>, as the install's GNUInstallDirs chose."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    out = []
    for prefix in (os.path.expanduser("~/.local"), sys.prefix, "/usr/local"):
        for libdir in ("lib", "lib64", os.path.join("lib", multiarch) if multiarch else None):
            for name in ("liblfm2c.so.0", "liblfm2c.so"):
                path = os.path.join(prefix, libdir, name) if libdir else None
                if path and os.path.exists(path) and path not in out:
                    out.append(path)
    return out


def _candidates():
    env = os.environ.get("LFM2C_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    bundled = [os.path.join(here, n) for n in ("liblfm2c.so", "liblfm2c.so.0")]
    return [p for p in bundled if os.path.exists(p)] + ["liblfm2c.so.0", "liblfm2c.so"] + _prefix_libs()


def _load():
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            tried.append(str(e))
    else:
        raise ImportError("lfm2c: cannot load liblfm2c.so (" + "; ".join(tried) + "): build it "
                          "(cmake --build build) and set LFM2C_LIB=build/liblfm2c.so, or install it "
                          "(cmake --install build --prefix ~/.local, or where the loader looks)")
    for name, (restype, argtypes) in _API.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = _load()
path = lib._name  # the library loaded: a path, or the name the system's loader resolved
# The library's malloc'd results (token arrays, rendered text, JSON) are released with the C
# library's free, the allocator liblfm2c itself uses.
_libc = ctypes.CDLL(None)
free = _libc.free
free.restype = None
free.argtypes = [ctypes.c_void_p]
