"""Build the configured teacher, and apply the command line's teacher overrides to a config.

`make_teacher(cfg)`: `kind: offline` → the annotation-based teacher (no key, no network; the default,
so the demo runs anywhere); `kind: openai` → `OpenAITeacher` on `base_url` (config, else
`OPENAI_BASE_URL`, else api.openai.com) with the key from the environment variable `api_key_env`.
A local OpenAI-compatible server (vLLM, SGLang, Ollama) usually needs no key: with a non-OpenAI
`base_url` and no key set, the teacher sends a placeholder. `kind: llamacpp` → the same
`OpenAITeacher` on a local llama.cpp server (`generation.teachers.llamacpp`): the run starts one and
passes its `base_url`; a teacher made without one starts its own and stops it in `aclose()`.

A key read from the environment must be printable ASCII: a key with a line break, a tab, another control
character or a non-ASCII character (a pasted `\n`, a typographic quote) cannot travel in an HTTP header,
so `make_teacher` refuses it with one line naming the variable and the character's position, never the key
(`ConfigError`, exit 2), before any request instead of failing inside the HTTP client.
"""
from __future__ import annotations

import logging
import os
from typing import Optional
from urllib.parse import urlparse

from pydantic import ValidationError

from generation.config import TEACHER_KINDS, ConfigError, TeacherConfig
from generation.teachers.base import Teacher

log = logging.getLogger("mmat.teacher")

NO_KEY_PLACEHOLDER = "EMPTY"  # what vLLM's docs use for servers started without --api-key


def resolve_base_url(cfg: TeacherConfig) -> Optional[str]:
    return cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None


def _is_openai_host(base_url: Optional[str]) -> bool:
    if not base_url:
        return True
    host = (urlparse(base_url).hostname or "").lower()
    return host == "openai.com" or host.endswith(".openai.com")


def missing_api_key(cfg: TeacherConfig) -> Optional[str]:
    """Why an `openai` teacher has no key it needs (one line naming the variable), or None: a key is set,
    the teacher needs none (offline, llama.cpp), or its server is not OpenAI's (keyless local servers)."""
    if cfg.kind != "openai" or (os.environ.get(cfg.api_key_env) or "").strip():
        return None
    if not _is_openai_host(resolve_base_url(cfg)):
        return None
    return (f"teacher.kind is openai but the environment variable {cfg.api_key_env} is not set: export it "
            f"(or set teacher.api_key_env to the variable that holds the key)")


def malformed_key(key: str, env_name: str) -> Optional[str]:
    """Why `key` (from `$env_name`) cannot be sent in an Authorization header, or None. Names the
    first bad character by position and kind, never the key's text."""
    for position, char in enumerate(key, start=1):
        if not (" " <= char <= "~"):
            kind = "a non-ASCII character" if ord(char) > 0x7F else "a control character"
            return (f"the environment variable {env_name} holds a malformed API key: {kind} (U+{ord(char):04X}) at "
                    f"position {position} of {len(key)}; set it to the key alone (no quotes, line breaks or "
                    f"pasted typographic characters)")
    return None


def env_api_key(cfg: TeacherConfig) -> str:
    """`$api_key_env` without surrounding whitespace ("" when unset); `ConfigError` when it is malformed."""
    key = (os.environ.get(cfg.api_key_env) or "").strip()
    problem = malformed_key(key, cfg.api_key_env)
    if problem:
        raise ConfigError(problem)
    return key


def resolve_api_key(cfg: TeacherConfig) -> str:
    """The key from `$api_key_env`; a placeholder for keyless local servers; else one clear error."""
    key = env_api_key(cfg)
    if key:
        return key
    problem = missing_api_key(cfg.model_copy(update={"kind": "openai"}))
    if problem:
        raise ConfigError(problem)
    log.info("no API key in $%s; sending a placeholder to %s (fine for a server without auth)",
             cfg.api_key_env, resolve_base_url(cfg))
    return NO_KEY_PLACEHOLDER


def make_teacher(cfg: TeacherConfig) -> Teacher:
    if cfg.kind == "offline":
        from generation.teachers.offline import OfflineTeacher

        return OfflineTeacher()
    if cfg.kind == "openai":
        from generation.teachers.openai_teacher import OpenAITeacher

        return OpenAITeacher(cfg, api_key=resolve_api_key(cfg), base_url=resolve_base_url(cfg))
    if cfg.kind == "llamacpp":
        return _llamacpp_teacher(cfg)
    raise ConfigError(f"unknown teacher.kind {cfg.kind!r}; allowed: {', '.join(TEACHER_KINDS)}")


def _llamacpp_teacher(cfg: TeacherConfig) -> Teacher:
    from generation.teachers.llamacpp import LlamaCppServer, local_teacher_config, settings_for
    from generation.teachers.openai_teacher import OpenAITeacher

    if cfg.base_url:  # the run's server, or a llama.cpp server the user started (with --api-key, maybe)
        key = env_api_key(cfg) or NO_KEY_PLACEHOLDER  # checked before the server is asked anything
        local = local_teacher_config(cfg, cfg.base_url)
        return OpenAITeacher(local, api_key=key, base_url=local.base_url)
    server = LlamaCppServer(settings_for(cfg), startup_timeout_s=cfg.startup_timeout_s).start()
    try:
        local = local_teacher_config(cfg, server.base_url)
        teacher = OpenAITeacher(local, api_key=NO_KEY_PLACEHOLDER, base_url=local.base_url)
    except BaseException:
        server.stop()
        raise
    teacher.owned_server = server
    return teacher


def apply_teacher_overrides(cfg: TeacherConfig, teacher: Optional[str] = None, model: Optional[str] = None,
                            base_url: Optional[str] = None, mmproj: Optional[str] = None) -> TeacherConfig:
    """`--teacher`, `--model`, `--base-url`, `--mmproj` on top of the YAML's `teacher:` section (a new,
    validated copy). With `--teacher llamacpp` (or `kind: llamacpp`), `--model` is the GGUF file.

    `--model` or `--base-url` with an offline teacher is an error rather than a silent no-op: the
    offline teacher has no model to switch."""
    updates = {}
    if teacher is not None:
        if teacher not in TEACHER_KINDS:
            raise ConfigError(f"--teacher {teacher!r}: allowed: {', '.join(TEACHER_KINDS)}")
        updates["kind"] = teacher
    kind = updates.get("kind", cfg.kind)
    if model is not None:
        if not model.strip():
            raise ConfigError("--model: empty model name")
        updates["model_path" if kind == "llamacpp" else "model"] = model.strip()
    if mmproj is not None:
        if kind != "llamacpp":
            raise ConfigError("--mmproj needs --teacher llamacpp (the vision projector of a local GGUF model)")
        updates["mmproj_path"] = mmproj
    if base_url is not None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"--base-url {base_url!r}: expected an http(s) URL such as http://localhost:8000/v1")
        updates["base_url"] = base_url
    if not updates:
        return cfg
    if kind == "offline" and ("model" in updates or "base_url" in updates):
        given = " and ".join(f"--{k.replace('_', '-')}" for k in ("model", "base_url") if k in updates)
        raise ConfigError(f"{given} need an OpenAI-compatible teacher: add --teacher openai "
                          f"(teacher.kind is offline)")
    # exclude_unset: defaults that depend on the kind (a local model's zero prices) stay defaults
    try:
        return TeacherConfig.model_validate({**cfg.model_dump(exclude_unset=True), **updates})
    except ValidationError as exc:
        raise ConfigError(f"teacher: {exc.errors()[0]['msg']}") from None
