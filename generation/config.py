"""The pipeline config (a YAML file), validated by pydantic at the edge.

Unknown keys and bad values are errors: `load_config` turns pydantic's report into one line that
names the key and what is allowed, because a typo in a million-sample run must fail before it starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from generation.errors import MmatError, did_you_mean
from generation.sources.base import SourceConfig
from generation.strict import StrictModel, allowed_keys, yaml_error_message
from operators import OPERATOR_NAMES
from operators.config import OperatorsConfig

TEACHER_KINDS = ("offline", "openai", "llamacpp")


class PriceTable(StrictModel):
    """USD per million tokens."""

    prompt_per_1m: float = 0.0
    completion_per_1m: float = 0.0
    # Prompt tokens the provider served from its prompt cache (issue 31); None: billed as prompt_per_1m.
    cached_prompt_per_1m: Optional[float] = Field(None, ge=0)


class BatchOptions(StrictModel):
    """`teacher.batch_options`: how `teacher.batch: true` gathers requests into OpenAI Batch API jobs
    (`generation.teachers.batch_client`). The provider's limits per input file are 50,000 requests and
    200 MB (base64 images included)."""

    max_requests: int = Field(50_000, ge=1, le=50_000)  # requests per batch input file
    max_bytes: int = Field(200_000_000, ge=1, le=200_000_000)  # bytes per batch input file
    poll_s: float = Field(60.0, gt=0)  # seconds between two looks at an open batch
    flush_wait_s: float = Field(5.0, gt=0)  # a batch is sent after this long without a new request
    folder: Optional[str] = None  # the durable batch records; default: <work folder>/teacher-batches


class TeacherConfig(StrictModel):
    kind: Literal[TEACHER_KINDS] = "offline"  # type: ignore[valid-type]
    model: str = "gpt-4o"
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(64, ge=1)
    requests_per_minute: Optional[float] = Field(None, gt=0)
    tokens_per_minute: Optional[float] = Field(None, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    temperature: float = 0.2
    max_tokens: int = 1024
    structured_output: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    # One response schema for every task (true: OpenAI and Azure read the schema as prompt tokens, so a
    # shared one keeps the cached prefix) or each task's own (false: a server that constrains decoding with
    # it, where the shared anyOf lets a small model write another task's object); auto: by the host.
    shared_schema: Literal["auto", True, False] = "auto"
    prices: Optional[PriceTable] = None  # None: by model (generation/teachers/prices.py), else unknown
    on_mismatch: Literal["keep", "quarantine"] = "keep"
    # Added with the quality audit (issue 19), default `auto` since issue 29: quarantine a sample whose answer
    # the evidence in its steps does not support ("answer not supported by tool evidence"), or whose last
    # thought admits it could not confirm the answer; false keeps it with meta.grounded = false and
    # meta.evidence = none. `auto`: on for the offline teacher (its tools are all the evidence it has), off
    # for a model teacher (its own visual reading is evidence the audit cannot see). See
    # `generation.verify.requires_grounding`.
    require_grounding: Union[Literal["auto"], bool] = "auto"
    judge: bool = False
    # Added with the OpenAI teacher (issue 4):
    judge_model: Optional[str] = None  # the judge pass's model; default: `model`
    backoff_base_s: float = Field(0.5, gt=0)  # first retry waits up to this (full jitter), doubling per retry
    backoff_max_s: float = Field(30.0, gt=0)  # cap of the backoff window (a Retry-After header wins)
    # A provider asking to wait longer than this (Retry-After, "try again in 20m") stops the run at once
    # (exit 2, saying when to rerun); a shorter wait pauses every request once (issue 30).
    max_wait_s: float = Field(300.0, gt=0)
    image_detail: Literal["auto", "low", "high"] = "auto"  # OpenAI vision `detail`; `low` = 85 tokens/image
    extra_body: dict[str, Any] = Field(default_factory=dict)  # extra JSON fields for vLLM/SGLang/Ollama
    # Added with the local llama.cpp teacher (issue 14):
    stop: Optional[list[str]] = None  # stop strings sent with every request (a rambling model ends early)
    # Whether the teacher sees the images: auto = find out once (llama.cpp's /props, else the server's
    # first refusal of an image), true = always send them, false = text-only mode (visual evidence only
    # through the operators). Rows record the mode in meta.teacher_mode.
    vision: Union[Literal["auto"], bool] = "auto"
    # kind: llamacpp — the engine starts a llama.cpp server (xllamacpp) on 127.0.0.1 for the run. With
    # base_url set it uses that running llama.cpp server instead and model_path may be left out.
    model_path: Optional[str] = None  # the GGUF file; the row's teacher.model is its name
    mmproj_path: Optional[str] = None  # the vision projector GGUF of a vision model
    n_ctx: int = Field(4096, ge=64)  # the context of one request, in tokens (the server gets n_ctx x parallel)
    threads: Optional[int] = Field(None, ge=1)  # CPU threads for the model; default: half the cores, at most 8
    parallel: int = Field(1, ge=1)  # requests the server decodes at once (= the teacher's requests in flight)
    startup_timeout_s: float = Field(300.0, gt=0)  # loading the model and the first /health
    # Added with the Batch API (issue 31): every chat request goes through OpenAI's Batch API at half the
    # price, in rounds (a sample's next call goes into a later batch); see generation.teachers.batch_client.
    batch: bool = False
    batch_options: BatchOptions = BatchOptions()

    @model_validator(mode="after")
    def _llamacpp_needs_a_model(self) -> "TeacherConfig":
        if self.kind == "llamacpp" and not self.model_path and not self.base_url:
            raise ValueError("teacher.kind llamacpp needs teacher.model_path (a GGUF file; --model PATH.gguf)")
        if self.mmproj_path and self.kind != "llamacpp":
            raise ValueError("teacher.mmproj_path is for kind llamacpp only")
        if self.batch and self.kind != "openai":
            raise ValueError("teacher.batch is for kind openai only (an endpoint with the Batch API)")
        return self


class RationaleConfig(StrictModel):
    max_steps: int = Field(5, ge=1, le=20)
    reflection: bool = True


class ReflectionConfig(StrictModel):
    """`reflection`: how often a teacher that can stage a defect (the offline teacher) writes one on purpose,
    for the checks to find and repair: a fraction of QA pairs, chosen by a hash of the id. Every other
    reflection is one a check found in what the teacher wrote; rows say which (`reflection.origin`). The
    paper repaired 57,647 of 1,090,263 QA pairs (46,508 general + 11,139 math, 5.3 %): the default stays
    below that."""

    staged_rate: float = Field(0.05, ge=0.0, le=1.0)


class TextLimits(StrictModel):
    """`integration.max_chars`: the longest text a row field may hold (characters). A longer one (a
    5 MB "thought", a runaway OCR dump) quarantines the sample at the integration stage, naming the field."""

    question: int = Field(16_000, ge=1)  # a source question (choices and instructions included)
    answer: int = Field(4_000, ge=1)  # the reference answer and the teacher's final answer
    thought: int = Field(8_000, ge=1)
    rag_query: int = Field(1_000, ge=1)
    observation: int = Field(32_000, ge=1)  # one operator or RAG result
    reflection: int = Field(8_000, ge=1)  # a reflection check's reason


class IntegrationConfig(StrictModel):
    max_chars: TextLimits = TextLimits()


class OutputConfig(StrictModel):
    validation_fraction: float = Field(0.1, ge=0.0, le=1.0)
    shard_max_bytes: int = Field(500_000_000, gt=0)
    row_group_rows: int = Field(64, ge=1)
    # Rolling shards (generation.shards): a group that gathered this many finished rows not yet in a
    # shard gets them as a part file while the run goes (0: shards only at the end), checked every
    # `rolling_check_s` seconds.
    rolling_shard_rows: int = Field(5000, ge=0)
    rolling_check_s: float = Field(30.0, gt=0)


OperatorName = Literal[OPERATOR_NAMES]  # type: ignore[valid-type]


class RayOperatorPlacement(StrictModel):
    """Where one operator runs under `--engine ray` (the local engine ignores this)."""

    actors: int = Field(1, ge=0)  # actors in its pool (model loaded once each); 0: inside the generation actors
    num_cpus: float = Field(0.25, ge=0)  # logical CPUs reserved per actor
    num_gpus: float = Field(0.0, ge=0)  # GPUs per actor, applied when the cluster has GPUs
    max_concurrency: int = Field(4, ge=1)  # calls queued into one actor at once (cache hits skip the model lock)
    # Ray custom resources per actor (`ray start --resources '{"ocr_node": 1}'`): places the pool on the
    # nodes that declare them; an actor whose node dies restarts on another node that has them.
    resources: dict[str, float] = Field(default_factory=dict)


# Endpoint-bound or cheap operators run inside the generation actors, model-bearing ones in pools.
_IN_PROCESS = RayOperatorPlacement(actors=0)


class RayConfig(StrictModel):
    """`runner.ray`: the Ray executor's layout. Teacher concurrency stays
    `runner.max_concurrency` (or `teacher.max_concurrency`), split evenly over the generation actors."""

    generate_actors: int = Field(1, ge=1)  # actors running the sample loop (teacher calls, checkpoints)
    generate_num_cpus: float = Field(0.25, ge=0)
    generate_resources: dict[str, float] = Field(default_factory=dict)  # custom resources per generation actor
    batch_size: int = Field(8, ge=1)  # samples per batch sent to a generation actor
    operators: dict[OperatorName, RayOperatorPlacement] = Field(default_factory=dict)

    def placement(self, name: str) -> RayOperatorPlacement:
        if name in self.operators:
            return self.operators[name]  # type: ignore[index]
        return _IN_PROCESS if name == "image_caption" else RayOperatorPlacement()


class RunnerConfig(StrictModel):
    work_dir: Optional[str] = None  # default: <out parent>/.mmat-work/<out name>
    max_quarantine_rate: float = Field(1.0, ge=0.0, le=1.0)
    max_concurrency: Optional[int] = Field(None, ge=1)  # samples in flight; default: teacher.max_concurrency
    # the local engine's generation processes: >1 when its CPU, not the teacher's latency, is the limit
    # (`generation.process_engine`); samples in flight and RPM/TPM budgets are split between them
    processes: int = Field(1, ge=1)
    ray: RayConfig = RayConfig()  # used by `--engine ray` only


class PipelineConfig(StrictModel):
    name: str = "mmat-1m"
    sources: list[SourceConfig]
    teacher: TeacherConfig = TeacherConfig()
    operators: OperatorsConfig = OperatorsConfig()
    rationale: RationaleConfig = RationaleConfig()
    reflection: ReflectionConfig = ReflectionConfig()
    integration: IntegrationConfig = IntegrationConfig()
    output: OutputConfig = OutputConfig()
    runner: RunnerConfig = RunnerConfig()

    @property
    def samples_in_flight(self) -> int:
        """How many samples run at once (both engines): `runner.max_concurrency`, else the teacher's."""
        return self.runner.max_concurrency or self.teacher.max_concurrency


class ConfigError(MmatError):
    """One line that names the bad key and what it accepts."""


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        loc = error["loc"]
        return f"unknown key '{where}'" + did_you_mean(loc[-1], allowed_keys(PipelineConfig, loc[:-1]))
    if kind == "missing":
        return f"missing key '{where}'"
    ctx = error.get("ctx") or {}
    if "expected" in ctx:
        return f"bad value for '{where}': {error.get('input')!r}; allowed: {ctx['expected']}"
    return f"bad value for '{where}': {error['msg']}"


# YAML 1.1 reads `off`/`no`/`false` as False and `on`/`yes`/`true` as True; an operator's `backend`
# means the same whichever way it was read (`off` is what the engine's own messages tell users to write).
_SWITCH_OFF = {False, "no", "false", "n"}
_SWITCH_ON = {True, "on", "yes", "true", "y"}


def _backend_switches(data: Any) -> Any:
    """`operators.<name>.backend`: off/no/false → "off", on/yes/true → "auto" (strings or booleans)."""
    operators = data.get("operators") if isinstance(data, dict) else None
    if not isinstance(operators, dict):
        return data
    fixed = {}
    for name, section in operators.items():
        if isinstance(section, dict) and "backend" in section:
            value = section["backend"]
            key = value.lower() if isinstance(value, str) else value
            if isinstance(key, (bool, str)) and key in _SWITCH_OFF:
                section = {**section, "backend": "off"}
            elif isinstance(key, (bool, str)) and key in _SWITCH_ON:
                section = {**section, "backend": "auto"}
        fixed[name] = section
    return {**data, "operators": fixed}


def parse_config(data: Any, origin: str = "config") -> PipelineConfig:
    """A validated config from plain data (parsed YAML); one-line `ConfigError` otherwise."""
    try:
        config = PipelineConfig.model_validate(_backend_switches(data))
    except ValidationError as exc:
        # an unknown key first: a typo is the likeliest cause of the other errors at the same place
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{origin}: {_describe(errors[0])}{more}") from None
    if not config.sources:
        raise ConfigError(f"{origin}: 'sources' is empty; add at least one source (see configs/demo.yaml)")
    return config


def load_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_message(path, exc)) from None
    if isinstance(data, dict) and {"engine_version", "config"} <= set(data):
        data = data["config"]  # a dataset's `mmat_config.yaml` (generation.config_snapshot): its config part
    config = parse_config(data, origin=str(path))
    _resolve_paths(config, path.resolve().parent)
    return config


def _resolve_paths(config: PipelineConfig, base: Path) -> None:
    """A relative input path in a config file means: relative to the folder of that file, wherever the
    command runs (`mmat generate --config /abs/configs/demo.yaml` from any folder reads the same sources).
    Source folders, the RAG corpus and the llama.cpp model files are inputs; outputs (`--out`,
    `runner.work_dir`, `operators.cache_dir`) and paths given as flags stay relative to the current folder."""
    def resolve(value: Optional[str | Path]) -> Optional[str]:
        if value is None:
            return None
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    for source in config.sources:
        if source.path is not None:
            source.path = Path(resolve(source.path))
        source.image_roots = [Path(resolve(root)) for root in source.image_roots]
    config.teacher.model_path = resolve(config.teacher.model_path)
    config.teacher.mmproj_path = resolve(config.teacher.mmproj_path)
    config.operators.rag.corpus = resolve(config.operators.rag.corpus)
