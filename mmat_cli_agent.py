"""`mmat agent` and `mmat eval`: run a model tuned on the rows as an agent, and measure it (`agent/`).

Registered on `mmat_cli.app`; a module of their own because their options (where the model runs, how it
is asked) are many and shared by both. `agent` itself is imported inside the commands, so other
commands do not pay for it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmat_cli_errors import USER_ERRORS, console, err_console, fail

# ---- mmat agent / mmat eval: run a model tuned on the rows, and measure it (agent/) ----------------------
def _agent_logging(quiet: bool) -> None:
    """Console log lines on stderr (stdout carries the trajectory, or JSON with --json)."""
    import logging

    from rich.logging import RichHandler

    from generation.logs import setup_console_logging

    setup_console_logging(quiet)
    for handler in logging.getLogger("mmat").handlers:
        if isinstance(handler, RichHandler):
            handler.console = err_console


def _endpoint_spec(endpoint: Optional[str], model: Optional[str], gguf: Optional[Path], model_path: Optional[Path],
                   base_model: Optional[str], api_key_env: str, vision: str, max_tokens: int, temperature: float,
                   extra_body: Optional[str], threads: Optional[int], n_ctx: int, parallel: int = 1):
    from agent import AgentError, EndpointSpec, SamplingSettings

    if vision not in ("auto", "on", "off"):
        raise AgentError(f"--vision must be auto, on or off, not {vision!r}")
    try:
        body = json.loads(extra_body) if extra_body else {}
    except json.JSONDecodeError as exc:
        raise AgentError(f"--extra-body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise AgentError("--extra-body must be a JSON object, e.g. '{\"repeat_penalty\": 1.15}'")
    return EndpointSpec(endpoint=endpoint, model=model, gguf=str(gguf) if gguf else None,
                        model_path=str(model_path) if model_path else None, base_model=base_model,
                        api_key_env=api_key_env, vision={"auto": None, "on": True, "off": False}[vision],
                        sampling=SamplingSettings(max_tokens=max_tokens, temperature=temperature, extra_body=body),
                        threads=threads, n_ctx=n_ctx, parallel=parallel)


# The options `mmat agent` and `mmat eval` share: where the model runs and how it is asked.
EndpointOpt = Annotated[Optional[str], typer.Option(
    "--endpoint", help="a running OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM, llama.cpp, SGLang)")]
ModelNameOpt = Annotated[Optional[str], typer.Option(
    "--model", help="the served model's name (default: the first one the endpoint lists)")]
GgufOpt = Annotated[Optional[Path], typer.Option(
    "--gguf", help="serve this GGUF here with llama.cpp (the local teacher's launcher) instead of --endpoint")]
ModelPathOpt = Annotated[Optional[Path], typer.Option(
    "--model-path", help="a local transformers model, or the LoRA folder `mmat train` wrote, instead of --endpoint")]
BaseModelOpt = Annotated[Optional[str], typer.Option("--base-model", help="with --model-path: the LoRA's base model")]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", min=1, help="rr: steps before the summary question")]
OperatorsConfigOpt = Annotated[Optional[Path], typer.Option(
    "--operators-config", help="a pipeline YAML whose operators: section picks the backends (as in generation)")]
ApiKeyEnvOpt = Annotated[str, typer.Option("--api-key-env", help="the environment variable that holds the key")]
VisionOpt = Annotated[str, typer.Option("--vision", help="send the images: auto (ask the server) | on | off")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="the longest reply")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0)]
ExtraBodyOpt = Annotated[Optional[str], typer.Option("--extra-body", help="extra request fields as JSON")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="with --gguf: CPU threads")]
NCtxOpt = Annotated[int, typer.Option("--n-ctx", min=64, help="with --gguf: context per request")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="warnings only")]
_CACHE_HELP = "operator-cache folder (pass a generation run's <work>/operator-cache to reuse its results)"


def agent_command(
    image: list[Path] = typer.Option(..., "--image", help="an image file (repeat for several)"),
    question: str = typer.Option(..., "--question", help="the question, with its response-style constraint if any"),
    endpoint: EndpointOpt = None, model: ModelNameOpt = None, gguf: GgufOpt = None, model_path: ModelPathOpt = None,
    base_model: BaseModelOpt = None,
    format: str = typer.Option("rr", "--format", help="rr (multi-turn) | orr (one turn) | plain (no tools)"),
    max_steps: MaxStepsOpt = 8,
    operators: Optional[str] = typer.Option(None, "--operators", help="orr: operators to run first, comma "
                                            "separated (default: every non-RAG operator available)"),
    operators_config: OperatorsConfigOpt = None,
    cache_dir: Path = typer.Option(Path(".mmat-agent/operator-cache"), "--cache-dir", help=_CACHE_HELP),
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY", vision: VisionOpt = "auto", max_tokens: MaxTokensOpt = 512,
    temperature: TemperatureOpt = 0.0, extra_body: ExtraBodyOpt = None, threads: ThreadsOpt = None,
    n_ctx: NCtxOpt = 4096,
    json_out: bool = typer.Option(False, "--json", help="print the trajectory as JSON"),
    quiet: QuietOpt = False,
) -> None:
    """Answer one question with a tuned model as an agent: it reasons in RR steps (or one ORR turn), the
    operators and RAG run on the image as in generation, and the whole trajectory is printed.

    Exit codes: 0 answered; 2 a usage error or an endpoint that cannot be used; 3 no answer (the model's
    replies did not parse, or the question could not run)."""
    from agent import Agent, AgentSettings
    from agent.render import print_trajectory
    from agent.trajectory import ANSWERED, MAX_STEPS

    _agent_logging(quiet or json_out)
    try:
        for path in image:  # a path typed wrong is a usage error, not an answer with status `error`
            if not path.is_file():
                raise FileNotFoundError(f"--image {str(path)!r}: no such file")
        spec = _endpoint_spec(endpoint, model, gguf, model_path, base_model, api_key_env, vision, max_tokens,
                              temperature, extra_body, threads, n_ctx)
        settings = AgentSettings(format=format, max_steps=max_steps, orr_operators=[
            name.strip() for name in operators.split(",") if name.strip()] if operators else None)
        with Agent.from_spec(spec, settings, operators_config=operators_config, cache_dir=cache_dir) as runner:
            result = runner.run_sync(image, question)
    except USER_ERRORS as exc:  # AgentError and LlamaCppError are MmatErrors
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130)
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        print_trajectory(result, console)
    if result.status not in (ANSWERED, MAX_STEPS):
        raise typer.Exit(3)


def eval_command(
    dataset: str = typer.Option(..., "--dataset", help="dataset folder, Hub repo id, or a .jsonl/.parquet/.csv file"),
    config: Optional[str] = typer.Option(None, "--config", help="dataset config, e.g. orr or rr (ours: any; "
                                         "the question, answer and images columns are the same)"),
    split: str = typer.Option("validation", "--split"),
    revision: Optional[str] = typer.Option(None, "--revision"),
    endpoint: EndpointOpt = None, model: ModelNameOpt = None, gguf: GgufOpt = None, model_path: ModelPathOpt = None,
    base_model: BaseModelOpt = None,
    format: str = typer.Option("all", "--format", help="rr | orr | plain | a comma list | all (plain, orr, rr: "
                               "prints the latency ratios against plain)"),
    max_steps: MaxStepsOpt = 8,
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="questions in flight at once"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="the first N rows only"),
    image_column: str = typer.Option("images", "--image-column"),
    question_column: str = typer.Option("question", "--question-column"),
    answer_column: str = typer.Option("answer", "--answer-column"),
    id_column: str = typer.Option("id", "--id-column", help="(the row index when the column is absent)"),
    source_column: str = typer.Option("source", "--source-column", help="accuracy is reported per source"),
    choices_column: Optional[str] = typer.Option(None, "--choices-column", help="options of multiple-choice rows"),
    aliases_column: Optional[str] = typer.Option(None, "--aliases-column", help="accepted answers (InfoSeek "
                                                 "answer_eval form: strings and numeric ranges)"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="answers and operator cache (default: "
                                            ".mmat-eval/<dataset>-<config>-<split>); a rerun resumes"),
    operators_config: OperatorsConfigOpt = None,
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=_CACHE_HELP + "; default: in --work-dir"),
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY", vision: VisionOpt = "auto", max_tokens: MaxTokensOpt = 512,
    temperature: TemperatureOpt = 0.0, extra_body: ExtraBodyOpt = None, threads: ThreadsOpt = None,
    n_ctx: NCtxOpt = 4096,
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
    quiet: QuietOpt = False,
) -> None:
    """Run the agent over a dataset's questions and score the answers with the project's verifier:
    accuracy (overall and per source), tool calls, turns, tokens and latency per question, and with
    --format all the latency of ORR and RR against the plain baseline. Answers are saved as they come
    (work folder): rerun the same command after a crash or Ctrl-C to finish."""
    import asyncio

    from agent import Agent, AgentSettings
    from agent.eval_data import Columns, load_eval_set
    from agent.eval_store import AnswerStore
    from agent.evaluate import default_work_dir, evaluate, parse_formats
    from agent.render import print_report

    _agent_logging(quiet or json_out)
    try:
        formats = parse_formats(format)
        columns = Columns(image=image_column, question=question_column, answer=answer_column, id=id_column,
                          source=source_column, choices=choices_column, aliases=aliases_column)
        evalset = load_eval_set(dataset, config, split, revision, columns, limit)
        work = work_dir or default_work_dir(dataset, config, split)
        spec = _endpoint_spec(endpoint, model, gguf, model_path, base_model, api_key_env, vision, max_tokens,
                              temperature, extra_body, threads, n_ctx, parallel=min(concurrency, 4))
        with AnswerStore(work) as store:
            agent = Agent.from_spec(spec, AgentSettings(format=formats[0], max_steps=max_steps),
                                    operators_config=operators_config, cache_dir=cache_dir or work / "operator-cache")

            async def go():
                async with agent:
                    return await evaluate(agent, evalset, store, formats, concurrency)

            report = asyncio.run(go())
            (work / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    except USER_ERRORS as exc:  # AgentError and LlamaCppError are MmatErrors
        fail(str(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted: answers so far are saved; rerun the same command to finish", highlight=False)
        raise typer.Exit(130)
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        print_report(report, console)
        console.print(f"answers: {store.path}", highlight=False, markup=False, soft_wrap=True)
