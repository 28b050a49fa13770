"""The ``ticketaudit`` command: parse options, call the API, map errors to exit codes. No logic here.

Exit codes: 0 pass, 1 a policy check failed, 2 bad input or usage, 3 internal error (a bug), 4 the files are
written but logging them to MLflow failed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import paths
from ._version import __version__
from ._io import WRITTEN, check_appendable, check_not_input, check_writable, sha256_file, write_atomically
from ._process import share_one_malloc_arena
from .choices import (ATTRIBUTION_METHODS, DEVICES, ENGINES, PRECISIONS, PRUNING_METHODS, RECOVERIES, TRUNCATIONS,
                      listed)
from .exceptions import InvalidInputError, SideOutputError
from .report.formats import visible_controls

if TYPE_CHECKING:
    from .audit import AuditResult

EXIT_PASS, EXIT_FAIL, EXIT_INPUT, EXIT_INTERNAL, EXIT_SIDE_OUTPUT = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
BUG_HINT = ("This is a bug in ticketaudit; please report it with the command line and the message above "
            "(set TICKETAUDIT_DEBUG=1 for a traceback).")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Audit a pruned network (lottery ticket) against its dense model, group by group.")
stderr = Console(stderr=True)


def _analyses_help() -> str:
    """``--analyses`` help from the registry (built-ins and installed plug-ins)."""
    from .analyses import registry

    try:
        return registry.help_line()
    except InvalidInputError as error:  # a broken plug-in: the audit itself will say so, as exit 2
        return f"Comma-separated analysis names ({error})"


def _guarded(command: Callable[..., int]) -> Callable[..., None]:
    """Map a command's outcome to the contract's exit codes; bad input never shows a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        WRITTEN.clear()
        try:
            with _terminate_as_interrupt():
                code = command(*args, **kwargs)
        except typer.Exit:
            raise
        except InvalidInputError as error:
            stderr.print(f"[bold red]error:[/] {escape(visible_controls(str(error)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INPUT) from None
        except SideOutputError as error:
            stderr.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            if WRITTEN:
                stderr.print(f"written: {', '.join(map(str, WRITTEN))}")
            raise typer.Exit(EXIT_SIDE_OUTPUT) from None
        except KeyboardInterrupt as interrupt:
            raise typer.Exit(_report_interrupt(interrupt)) from None
        except Exception as error:  # a bug: say so, with enough to report it
            stderr.print(f"[bold red]internal error:[/] {escape(type(error).__name__)}: {escape(str(error))}",
                         highlight=False, soft_wrap=True)
            stderr.print(BUG_HINT)
            if os.environ.get("TICKETAUDIT_DEBUG"):
                traceback.print_exc()
            raise typer.Exit(EXIT_INTERNAL) from None
        raise typer.Exit(code)

    return wrapper


def _say(text: str) -> None:
    """Print a line of the summary to stdout. When the reader has gone (``ticketaudit report ... | head``),
    the rest goes to /dev/null: the outputs are written and the exit code stands; it is not a bug."""
    try:
        print(visible_controls(text), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _report_interrupt(interrupt: KeyboardInterrupt) -> int:
    """Say truly what an interrupt left behind; the exit code is 130 (Ctrl-C) or 143 (SIGTERM)."""
    if WRITTEN:  # outputs are put in place together, so this is all of them
        stderr.print(f"interrupted after the outputs were written: {', '.join(map(str, WRITTEN))}.")
    else:
        stderr.print("interrupted: nothing was written.")
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every temp file is removed on the way out."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[object]:
    """Rich progress bars on a terminal; plain lines (stage, done / total, elapsed, estimate, at most every 10 s)
    when stderr is a log or a pipe, as in CI; a no-op callback with --quiet."""
    if quiet:
        yield lambda *_: None
        return
    if not stderr.is_terminal:
        from .progress import PlainProgress

        plain = PlainProgress(lambda line: print(visible_controls(line), file=sys.stderr, flush=True))
        try:
            yield plain
        finally:
            plain.close()
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=done, total=total)

        yield update


def _version(value: bool) -> None:
    if value:
        _say(f"ticketaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """ticketaudit: paired subgroup audit of a dense model and its ticket."""


@app.command()
@_guarded
def report(
    dense: Annotated[str, typer.Option(help="Dense model: bundle directory, Hugging Face directory (classifier or causal LM), .gguf file, state_dict file, or pickled module.")],
    data: Annotated[str, typer.Option(help="Table: .csv, .tsv, .parquet, a directory or glob of Parquet/CSV files, or - for CSV on stdin; with --benchmark the benchmark's files; with --task choice|pair|likelihood also .jsonl.")],
    target: Annotated[Optional[str], typer.Option(help="Label column (with --task choice: the index of the right choice; --benchmark fills it).")] = None,
    sensitive: Annotated[Optional[str], typer.Option(help="Sensitive column(s), comma-separated; several form intersections (--benchmark fills them).")] = None,
    benchmark: Annotated[Optional[str], typer.Option(help="Language models: bbq (the BBQ JSONL release: a file or its folder) or crows-pairs (its CSV), scored as lm-evaluation-harness does.")] = None,
    task: Annotated[Optional[str], typer.Option(help="Language models on your own items: choice (multiple choice by summed log-likelihood), pair (which of two sentences the model finds more likely) or likelihood (loss per token and perplexity per group on the texts of --text COL; no label).")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="--task choice: the prompt column.")] = None,
    choices: Annotated[Optional[str], typer.Option(help="--task choice: the choice columns, comma-separated (the target is the right one's index), or one column holding each item's list; --task pair: the two sentence columns (stereotyping first).")] = None,
    prompt_template: Annotated[Optional[Path], typer.Option(help="--task choice: a Jinja template rendering each item's prompt from its columns (instead of --prompt).")] = None,
    bbq_choices: Annotated[str, typer.Option(help="--benchmark bbq: harness (the two named answers plus the harness's 10 'unknown' phrasings, as lm-evaluation-harness) or original (the release's three answers).")] = "harness",
    choice_score: Annotated[str, typer.Option(help="Language models: acc (the choice with the highest summed log-likelihood) or acc_norm (per character, lm-evaluation-harness's acc_norm).")] = "acc",
    limit: Annotated[Optional[int], typer.Option(help="--benchmark / --task: read at most N items.")] = None,
    ticket: Annotated[Optional[str], typer.Option(help="Ticket (pruned model) in any supported format.")] = None,
    mask: Annotated[Optional[str], typer.Option(help="Mask file; the ticket is then dense weights x mask.")] = None,
    factory: Annotated[Optional[str], typer.Option(help="MODULE:FUNC building the nn.Module for plain state_dicts.")] = None,
    features: Annotated[Optional[str], typer.Option(help="Feature columns in model-input order, comma-separated.")] = None,
    text: Annotated[Optional[str], typer.Option(help="Text column, tokenised with the Hugging Face model's tokenizer (with --task likelihood: the texts a language model scores).")] = None,
    image: Annotated[Optional[str], typer.Option(help="Image column: file paths (relative to the data file's folder) or encoded bytes (Parquet).")] = None,
    image_processor: Annotated[Optional[Path], typer.Option(help="preprocessor_config.json turning images into model inputs [default: the model directory's].")] = None,
    no_thumbnails: Annotated[bool, typer.Option("--no-thumbnails", help="Image models: keep copies of the audited images out of the report (privacy).")] = False,
    split: Annotated[Optional[str], typer.Option(help="Keep only rows with COL=VALUE.")] = None,
    policy: Annotated[Optional[Path], typer.Option(help="Policy TOML file ([policy] table).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="HTML report path [default: reports/ticketaudit-<time>.html].")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="JSON report path.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed; given, the JSON is byte-identical across runs.")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    confidence: Annotated[Optional[float], typer.Option(help="Confidence level (overrides the policy's).")] = None,
    device: Annotated[str, typer.Option(help=f"{listed(DEVICES)} (never changes results).")] = "cpu",
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per forward pass for tables (default 1024) and images (default 64), tokens (rows x padded length) for text (default 16384); never changes results.")] = None,
    max_rows: Annotated[Optional[int], typer.Option(help="Audit only the first N rows.")] = None,
    analyses: Annotated[Optional[str], typer.Option(help=_analyses_help())] = None,
    attribution_method: Annotated[Optional[str], typer.Option(help=f"{listed(ATTRIBUTION_METHODS)} (layer-integrated-gradients: column tokens of an ft-transformer) [default: integrated-gradients; input-x-gradient for language models].")] = None,
    attribution_target: Annotated[str, typer.Option(help="label (default) or predicted (the dense model's prediction), for both models.")] = "label",
    attribution_rows: Annotated[Optional[int], typer.Option(help="Rows to attribute, drawn stratified by group [default: 2000 or all].")] = None,
    proxies: Annotated[Optional[str], typer.Option(help="Columns to treat as proxies of the sensitive ones, comma-separated.")] = None,
    identity_terms: Annotated[Optional[Path], typer.Option(help="Text models: a file of words that name a group (one per line), besides the sensitive values' own words.")] = None,
    attribution_budget: Annotated[float, typer.Option(help="Text models without --attribution-rows: attribute as many rows as fit in about this many seconds on 2 CPU cores.")] = 120.0,
    alternatives: Annotated[bool, typer.Option("--alternatives", help="Add fairness-aware pruning alternatives at the ticket's per-layer densities.")] = False,
    train_data: Annotated[Optional[str], typer.Option(help="Training table for --alternatives (masks, fine-tuning); without it the audit data is split by group.")] = None,
    recover: Annotated[str, typer.Option(help=f"Recovery for --alternatives: {listed(RECOVERIES)} (all but none need --train-data).")] = "none",
    alternatives_budget: Annotated[float, typer.Option(help="Estimated seconds the pruning alternatives may take on 2 CPU cores (priced from counted multiply-adds, so the same jobs run on every machine); jobs past it are skipped and named in the report.")] = 600.0,
    alternatives_out: Annotated[Optional[Path], typer.Option(help="Language models: the new directory --alternatives saves its candidates in (Hugging Face directories, the evaluation items, each one's re-audit command) [default: REPORT-alternatives beside the HTML report].")] = None,
    engine: Annotated[str, typer.Option(help=f"{listed(ENGINES)}: this process, or Ray workers with the same results (needs ticketaudit\\[ray]).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (host:port or ray://host:10001) [default: start Ray here].")] = None,
    num_workers: Annotated[int, typer.Option(help="Ray workers, each loading both models once (never changes results).")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per Ray worker (fractions share a GPU); use with --device cuda.")] = 0.0,
    precision: Annotated[str, typer.Option(help=f"{listed(PRECISIONS)}: float64 = the same results at any batch size and worker count; float32/bfloat16 = the model's own speed, reproducible for the same batch size and device; auto = float64 on the CPU when the forward passes are cheap (multiply-adds x rows), else the models' own.")] = "auto",
    truncation: Annotated[str, typer.Option(help=f"Text longer than the model's limit: {listed(TRUNCATIONS)} (head: its first tokens; head+tail: its first quarter and last three quarters; error: exit 2). Truncated rows are counted per group either way.")] = "head",
    max_unseen_share: Annotated[float, typer.Option(help="Refuse when more than this share of rows has a one-hot value the model has no category for (counted and noted either way).")] = 0.05,
    junit: Annotated[Optional[Path], typer.Option(help="Also write the checks as JUnit XML (one test case per check) for CI test reporters.")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Also write a pull-request summary in Markdown (appended to $GITHUB_STEP_SUMMARY when set).")] = None,
    model_card: Annotated[Optional[Path], typer.Option(help="Also write a Hugging Face model-card fragment: model-index metadata and a Bias, Risks, and Limitations section.")] = None,
    groups_table: Annotated[Optional[Path], typer.Option(help="Also write every group's numbers as a Parquet table (one row per group), however many groups the report lists.")] = None,
    all_groups: Annotated[bool, typer.Option("--all-groups", help="List every group in the JSON and HTML (default: above 100 groups, those that matter, the rest counted).")] = False,
    mlflow: Annotated[Optional[str], typer.Option(metavar="[TRACKING_URI]", help="Log the audit as an MLflow run (needs ticketaudit\\[mlflow]); alone, MLflow's default tracking URI.")] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow loading pickled modules (runs code!).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> int:
    """Audit a ticket against its dense model; exit 0 pass, 1 fail, 2 bad input, 3 internal error."""
    from .audit import audit
    from .config import Policy
    from .outputs import WorkflowOutputs, write_report
    from .report.render import command_line

    html_path = out if out is not None else paths.default_report_path()
    prune_settings = _prune_settings(alternatives, train_data=train_data, recover=recover, budget=alternatives_budget,
                                     save_to=alternatives_out, html_path=html_path)
    workflow = WorkflowOutputs(junit=junit, markdown=markdown, model_card=model_card, mlflow=_mlflow_uri(mlflow),
                               model_name=Path(ticket).name if ticket else "ticket", groups_table=groups_table,
                               all_groups=all_groups)
    outputs = {"--out": html_path, **({"--json": json_path} if json_path is not None else {}), **workflow.paths()}
    inputs = {"--dense": dense, "--ticket": ticket, "--mask": mask, "--data": data, "--policy": policy,
              "--train-data": train_data, "--identity-terms": identity_terms, "--image-processor": image_processor,
              "--prompt-template": prompt_template}
    check_not_input(outputs, inputs)
    if out is None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
    _check_outputs(outputs)
    if markdown is not None and os.environ.get("GITHUB_STEP_SUMMARY"):
        check_appendable(Path(os.environ["GITHUB_STEP_SUMMARY"]), what="$GITHUB_STEP_SUMMARY", inputs=inputs,
                         outputs=outputs)
        outputs["$GITHUB_STEP_SUMMARY"] = Path(os.environ["GITHUB_STEP_SUMMARY"])
    if workflow.mlflow is not None:
        from .workflow.mlflow_run import check_tracking_uri, require_mlflow

        require_mlflow()
        check_tracking_uri(workflow.mlflow)
    the_policy = Policy.from_toml(policy) if policy is not None else Policy()
    with _progress(quiet) as update:
        result = audit(dense=dense, ticket=ticket, mask=mask, data=data, target=target, sensitive=sensitive,
                       features=features, text=text, image=image, image_processor=image_processor,
                       thumbnails=not no_thumbnails, split=split, policy=the_policy, seed=seed, n_boot=n_boot,
                       confidence=confidence, device=device, batch_size=batch_size, max_rows=max_rows,
                       analyses=analyses, factory=factory, allow_pickle=allow_pickle,
                       attribution_method=attribution_method, attribution_target=attribution_target,
                       attribution_rows=attribution_rows, proxies=proxies, identity_terms=identity_terms,
                       attribution_budget=attribution_budget, alternatives=prune_settings,
                       train_data=train_data, engine=engine, ray_address=ray_address, num_workers=num_workers,
                       gpus_per_worker=gpus_per_worker, max_unseen_share=max_unseen_share, precision=precision,
                       truncation=truncation, benchmark=benchmark, task=task, prompt=prompt, choices=choices,
                       prompt_template=prompt_template, bbq_choices=bbq_choices, choice_score=choice_score, limit=limit,
                       outputs=outputs, progress=update)  # type: ignore[arg-type]
    if policy is not None:
        result.provenance["policy_source"] = f"{policy} — sha256 {sha256_file(policy)}"
    try:
        write_report(result, html_path=html_path, json_path=json_path, command=command_line(), inputs=inputs,
                     workflow=workflow)
    except SideOutputError:
        _print_summary(result, html_path, json_path)  # the files hold the verdict: say it, then exit 4
        raise
    _print_summary(result, html_path, json_path)
    for option, path in workflow.paths().items():
        _say(f"{option.removeprefix('--')}: {path}")
    if prune_settings and any(c.saved_to for c in result.alternatives.candidates):
        _say(f"alternatives: {result.alternatives.recommendation}")
        _say(f"candidates: {prune_settings.save_to} (each with candidate.json: the command that audits it again)")
    return EXIT_FAIL if result.gate_failed else EXIT_PASS


def _prune_settings(alternatives: bool, *, train_data: str | None, recover: str, budget: float, save_to: Path | None,
                    html_path: Path) -> Any:
    """``report --alternatives``' settings (False without it); a language model's candidates are saved in
    ``save_to``, by default REPORT-alternatives beside the HTML report."""
    from .pruning.alternatives import PruneSettings

    if not alternatives and (train_data is not None or recover != "none"):
        raise InvalidInputError("--train-data and --recover belong to --alternatives; add --alternatives or drop them.")
    if save_to is not None and not alternatives:
        raise InvalidInputError("--alternatives-out belongs to --alternatives; add --alternatives or drop it.")
    if not alternatives:
        return False
    return PruneSettings(recover=recover, budget_seconds=budget, save_to_named=save_to is not None,
                         save_to=save_to or html_path.parent / f"{html_path.stem}-alternatives")


OUTPUT_WORDS = {"--out": "report", "--json": "JSON report", "--junit": "JUnit XML", "--markdown": "Markdown summary",
                "--model-card": "model card", "--groups-table": "groups table"}


def _check_outputs(outputs: dict[str, Path]) -> None:
    """Every output writable, and no two of them the same file."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        check_writable(path, what=OUTPUT_WORDS.get(option, option))
        same = seen.setdefault(Path(os.path.realpath(path)), option)
        if same != option:
            raise InvalidInputError(f"{same} and {option} name the same file; give them different paths.")


def _mlflow_uri(value: str | None) -> str | None:
    """``--mlflow`` alone arrives as the empty string (see ``main``): MLflow's default tracking URI."""
    return None if value is None else value.strip()


STDOUT_CHECKS = 20
"""Checks of one status printed to stdout at most (the report lists the rest)."""


def _print_summary(result: AuditResult, html_path: Path, json_path: Path | None) -> None:
    from .report.formats import amount
    from .workflow.reports import gate_line, verdict_line

    document = {"verdict": result.verdict, "policy": result.policy.to_dict(),  # what the two lines read
                "checks": [{"status": check.status} for check in result.checks]}
    _say(verdict_line(document))
    shown = STDOUT_CHECKS
    for check in result.inconclusive_checks[:shown]:  # named first: what the data could not show
        where = f" [{check.group}]" if check.group else ""
        settle = f"; about {check.rows_to_settle:,} more rows would settle it" if check.rows_to_settle else ""
        _say(f"  INCONCLUSIVE {check.id}{where}: {amount(check.value, check.metric, 2)}, could be up to "
              f"{amount(check.pass_bound, check.metric, 2)} (tolerance {amount(check.tolerance, check.metric, 2, sign=False)})"
              f"{settle}")
    if len(result.inconclusive_checks) > shown:
        _say(f"  ... and {len(result.inconclusive_checks) - shown:,} more inconclusive checks (in the report)")
    for check in result.failed_checks[:shown]:
        where = f" [{check.group}]" if check.group else ""
        _say(f"  FAIL {check.id}{where}: {amount(check.value, check.metric, 2)} (tolerance "
              f"{amount(check.tolerance, check.metric, 2, sign=False)}, adjusted p {check.p_value:.3g})")
    if len(result.failed_checks) > shown:
        _say(f"  ... and {len(result.failed_checks) - shown:,} more failed checks (in the report)")
    for check in result.not_evaluated_checks:
        _say(f"  NOT EVALUATED {check.id}: {check.reason} (counted as {result.policy.on_not_evaluated})")
    _say(gate_line(document))
    _say(f"report: {html_path}")
    if json_path is not None:
        _say(f"json: {json_path}")


def _check_output_directory(out: Path, *, first_file: str, what: str, what_directory: str | None = None) -> None:
    """--out must be a writable directory, or a path where one can be created."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out '{out}' exists and is not a directory. Choose a directory.")
    if out.is_dir():
        check_writable(out / first_file, what=what)
    else:
        check_writable(out, what=what_directory or what)


def _floats(text: str | None, *, option: str) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInputError(f"{option} must be comma-separated numbers, e.g. 0.5,0.7,0.9; got {text!r}.") from None


@app.command()
@_guarded
def prune(
    sparsity: Annotated[float, typer.Option(help="Share of prunable weights to remove, in (0, 1).")],
    dense: Annotated[Optional[str], typer.Option(help="Dense model: bundle directory, state_dict file (+ --factory), or pickled module.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Held-out table the candidates are compared on (.csv, .tsv, .parquet).")] = None,
    target: Annotated[Optional[str], typer.Option(help="Label column.")] = None,
    sensitive: Annotated[Optional[str], typer.Option(help="Sensitive column(s), comma-separated.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Language models: a causal-LM directory or .gguf file to prune (--method magnitude, wanda or sparsegpt); writes a Hugging Face directory to --out.")] = None,
    pattern: Annotated[Optional[str], typer.Option(help="Language models: 2:4 or 4:8 (N:M sparsity; --sparsity 0.5).")] = None,
    calibration: Annotated[Optional[Path], typer.Option(help="Language models: calibration text file, or items (.jsonl, .csv, .parquet) with --calibration-text [default: the shipped calibration text].")] = None,
    calibration_text: Annotated[Optional[str], typer.Option(help="Language models: the text column of --calibration items.")] = None,
    balance_groups: Annotated[Optional[str], typer.Option(help="Language models: the group column of --calibration items; each group gives the same calibration tokens (wanda-worst-group also takes norms per group).")] = None,
    protect: Annotated[Optional[str], typer.Option(help="Language models: a true/false column of --calibration items marking the items whose dense answers must be kept: their tokens weigh --protect-weight times more in Wanda's norms and SparseGPT's Hessian.")] = None,
    protect_weight: Annotated[float, typer.Option(help="Language models: how many times a protected item's tokens count (with --protect).")] = 4.0,
    method: Annotated[str, typer.Option(help=f"Comma-separated: {listed(PRUNING_METHODS, last='and')}, or all.")] = "all",
    recover: Annotated[str, typer.Option(help=f"{listed(RECOVERIES)} (all but none need --train-data).")] = "none",
    train_data: Annotated[Optional[str], typer.Option(help="Training table (masks and fine-tuning); without it --data is split by group.")] = None,
    features: Annotated[Optional[str], typer.Option(help="Feature columns in model-input order (models without preprocess.json).")] = None,
    text: Annotated[Optional[str], typer.Option(help="Text column of a Hugging Face text model.")] = None,
    image: Annotated[Optional[str], typer.Option(help="Image column of a CNN: file paths (relative to each table's folder) or encoded bytes.")] = None,
    image_processor: Annotated[Optional[Path], typer.Option(help="preprocessor_config.json turning images into model inputs [default: the bundle's].")] = None,
    factory: Annotated[Optional[str], typer.Option(help="MODULE:FUNC building the nn.Module for plain state_dicts.")] = None,
    rounds: Annotated[int, typer.Option(help="Iterative pruning rounds (density shrinks geometrically).")] = 1,
    rewind_to: Annotated[str, typer.Option(help="Each round restarts from the dense weights (dense) or continues (none).")] = "dense",
    seeds: Annotated[int, typer.Option(help="Tickets per method; more than 1 also evaluates their ensemble against the dense ensemble of equal compute, K = round(M x (1 - sparsity)).")] = 1,
    dense_ensemble: Annotated[Optional[str], typer.Option(help="More dense models (comma-separated paths) for that K-model dense ensemble [default: trained here with --train-data].")] = None,
    sweep: Annotated[Optional[str], typer.Option(help="Sparsities for critical-sparsity curves, increasing, e.g. 0.5,0.7,0.9.")] = None,
    data_fractions: Annotated[Optional[str], typer.Option(help="Repeat the sweep on these shares of the training rows, e.g. 0.25,0.5,1.")] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs per round (with --recover).")] = 3,
    budget: Annotated[float, typer.Option(help="Estimated seconds finding and comparing the candidates may take on 2 CPU cores (priced from counted multiply-adds, so the same jobs run on every machine); jobs past it are skipped and named in the report.")] = 600.0,
    policy: Annotated[Optional[Path], typer.Option(help="Policy TOML file ([policy] table).")] = None,
    out: Annotated[Path, typer.Option(help="Output directory: one bundle per candidate, alternatives.html, alternatives.json.")] = paths.REPORTS_DIR / "prune",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow loading pickled modules (runs code!).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> int:
    """Prune the dense model with fairness-aware methods at one sparsity; save and compare the candidates."""
    from .config import Policy
    from .prune import prune as find, write_prune
    from .report.render import command_line

    if model is not None:
        return _prune_language(model, method=method, sparsity=sparsity, pattern=pattern, calibration=calibration,
                               calibration_column=calibration_text, balance_groups=balance_groups, protect=protect,
                               protect_weight=protect_weight, seed=seed,
                               out=out, quiet=quiet, extra=dense or data or target or sensitive)
    language_only = [o for o, v in (("--calibration", calibration), ("--calibration-text", calibration_text),
                                    ("--balance-groups", balance_groups), ("--protect", protect)) if v is not None]
    if language_only:
        raise InvalidInputError(f"{', '.join(language_only)} calibrate a language model: give --model DIR|FILE.gguf "
                                "(classifiers choose masks on --train-data or the audit data).")
    missing = [o for o, v in (("--dense", dense), ("--data", data), ("--target", target), ("--sensitive", sensitive))
               if v is None]
    if dense is None or data is None or target is None or sensitive is None:
        raise InvalidInputError(f"prune needs {', '.join(missing)} (or, for a language model, --model DIR).")
    _check_output_directory(out, first_file="alternatives.json", what="prune output")
    inputs = {"--dense": dense, "--data": data, "--train-data": train_data, "--policy": policy,
              "--image-processor": image_processor,
              **{f"--dense-ensemble {path}": path for path in (dense_ensemble or "").split(",") if path.strip()}}
    check_not_input({"--out": out}, inputs)
    the_policy = Policy.from_toml(policy) if policy is not None else Policy()
    with _progress(quiet) as update:
        update("Finding and comparing candidate tickets", 0, 1)
        result = find(dense=dense, data=data, target=target, sensitive=sensitive, sparsity=sparsity, methods=method,
                      recover=recover, train_data=train_data, features=features, policy=the_policy, seed=seed,
                      n_boot=n_boot, rounds=rounds, rewind_to=rewind_to, seeds=seeds,
                      sweep=_floats(sweep, option="--sweep"),
                      data_fractions=_floats(data_fractions, option="--data-fractions"), epochs=epochs, factory=factory,
                      allow_pickle=allow_pickle, image=image, image_processor=image_processor,
                      dense_ensemble=dense_ensemble, text=text, budget_seconds=budget)
    write_prune(result, out, command=command_line(), inputs=inputs)
    alternatives = result.alternatives
    for candidate in alternatives.candidates:
        _say(f"{candidate.name}: accuracy {candidate.accuracy * 100:.1f}%, worst group {candidate.worst_group} "
              f"{candidate.worst_group_accuracy.value * 100:.1f}%, gap widening {candidate.gap_widening.value * 100:+.1f} pts, "
              f"verdict {candidate.verdict}")
    _say(f"recommendation: {alternatives.recommendation}")
    _say(f"report: {out / 'alternatives.html'}")
    return EXIT_PASS


@app.command()
@_guarded
def demo(
    out: Annotated[Optional[Path], typer.Option(help="Output directory [default: reports/demo; reports/demo-cnn for --model cnn; reports/demo-llm for --model llm].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for training and the audit.")] = 0,
    model: Annotated[str, typer.Option(help="mlp, transformer (a small FT-Transformer on Adult), cnn (a small CNN on generated shape images), or llm (SmolLM2-135M-Instruct and its 50% Wanda ticket on 600 BBQ items; needs ticketaudit\\[llm]).")] = "mlp",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> int:
    """Train a dense model and an IMP ticket on bundled data (UCI Adult; shape images for cnn), audit them,
    write DIR/report.html."""
    from .demo import run_demo
    from .demo_images import run_image_demo
    from .demo_llm import run_language_demo, smollm2_path

    if model not in ("mlp", "transformer", "cnn", "llm"):
        raise InvalidInputError(f"--model must be 'mlp', 'transformer', 'cnn' or 'llm', got {model!r}.")
    if model == "llm":
        smollm2_path()  # its package installed, before any file is written
    if out is None:
        out = {"cnn": paths.IMAGE_DEMO_DIR, "llm": paths.LLM_DEMO_DIR}.get(model, paths.DEMO_DIR)
    _check_output_directory(out, first_file="report.html", what="demo output",
                            what_directory="demo output directory")
    with _progress(quiet) as update:
        if model == "cnn":
            result = run_image_demo(out, seed=seed, progress=update)
        elif model == "llm":
            result = run_language_demo(out, seed=seed, progress=update)
        else:
            result = run_demo(out, seed=seed, model=model, progress=update)  # type: ignore[arg-type]
    _print_summary(result, out / "report.html", out / "report.json")
    return EXIT_PASS


def _prune_language(model: str, *, method: str, sparsity: float, pattern: str | None, calibration: Path | None,
                    calibration_column: str | None, balance_groups: str | None, protect: str | None,
                    protect_weight: float, seed: int, out: Path, quiet: bool, extra: Any) -> int:
    """``prune --model``: one language-model ticket, saved as a Hugging Face directory."""
    from .prune_language import prune_language_model

    if extra is not None:
        raise InvalidInputError("--model prunes a language model on calibration text; leave out --dense, --data, "
                                "--target and --sensitive (they belong to classifiers).")
    if method == "all":
        raise InvalidInputError("choose the language-model method: --method magnitude, wanda, sparsegpt or "
                                "wanda-worst-group.")
    _check_output_directory(out, first_file="config.json", what="prune output")
    check_not_input({"--out": out}, {"--model": model, "--calibration": calibration})
    with _progress(quiet) as update:
        summary = prune_language_model(model, method=method, sparsity=sparsity, pattern=pattern, out=out,
                                       calibration=calibration, calibration_column=calibration_column,
                                       balance_groups=balance_groups, protect=protect, protect_weight=protect_weight,
                                       seed=seed, progress=update)
    loss = summary["loss_per_token"]
    _say(f"{method} {pattern or 'unstructured'}: decoder weights {summary['decoder_weight_sparsity']:.1%} zero, "
         f"loss per token {loss['dense']:.3f} -> {loss['ticket']:.3f}, {summary['seconds']:.0f} s")
    _say(f"ticket: {out} (audit it with report --ticket {out})")
    return EXIT_PASS


@app.command()
@_guarded
def diff(
    old: Annotated[Path, typer.Argument(help="The earlier audit's JSON report (ticketaudit report --json).")],
    new: Annotated[Path, typer.Argument(help="The later audit's JSON report.")],
    fail_on_regression: Annotated[bool, typer.Option("--fail-on-regression", help="Exit 1 when the verdict or a check got worse, or a group's delta moved significantly the harmful way.")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the comparison as JSON.")] = None,
) -> int:
    """What changed between two audits: verdict, checks that changed state, per-group deltas that moved."""
    from .workflow.diff import diff_reports
    from .workflow.reports import load_report

    if json_path is not None:
        check_not_input({"--json": json_path}, {"OLD": old, "NEW": new})
        check_writable(json_path, what="diff JSON")
    comparison = diff_reports(load_report(old, what="OLD"), load_report(new, what="NEW"))
    if json_path is not None:
        write_atomically({json_path: (json.dumps(comparison.to_dict(), indent=2, sort_keys=True) + "\n").encode()})
    for line in comparison.lines():
        _say(line)
    return EXIT_FAIL if fail_on_regression and comparison.regression else EXIT_PASS


@app.command()
@_guarded
def history(
    reports: Annotated[list[Path], typer.Argument(help="A directory of JSON reports (natural name order) or the files, oldest first.")],
    out: Annotated[Optional[Path], typer.Option(help="HTML page [default: reports/ticketaudit-history-<time>.html].")] = None,
) -> int:
    """Audits of successive tickets or releases side by side: one offline HTML page with per-group trends."""
    from .workflow.history import load_history, render_history

    html_path = out if out is not None else paths.default_history_path()
    check_not_input({"--out": html_path}, {str(p): p for p in reports})
    if out is None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
    check_writable(html_path, what="history page")
    audits = load_history(reports)
    write_atomically({html_path: render_history(audits).encode("utf-8")})
    _say(f"{len(audits)} audits: " + " -> ".join(f"{label} {doc['verdict'].upper()}" for label, doc in audits))
    _say(f"history: {html_path}")
    return EXIT_PASS


@app.command()
@_guarded
def schema() -> int:
    """Print the JSON Schema of the report."""
    from .report.schema import report_schema

    _say(json.dumps(report_schema(), indent=2))
    return EXIT_PASS


OPTIONAL_VALUE_OPTIONS = ("--mlflow",)


def optional_values(args: list[str]) -> list[str]:
    """``--mlflow`` may stand alone (MLflow's default tracking URI) or take a URI; alone (last, or before
    another option) it is passed on as ``--mlflow=`` so the parser never takes the next option as its value."""
    out = []
    for i, arg in enumerate(args):
        following = args[i + 1] if i + 1 < len(args) else None
        alone = following is None or (following.startswith("-") and following != "-")
        out.append(f"{arg}=" if arg in OPTIONAL_VALUE_OPTIONS and alone else arg)
    return out


def main() -> None:
    """Console-script entry point. A signal outside a command (while Typer parses) is reported like one
    inside it; once the command is done, signals are ignored while the interpreter shuts down, so a
    finished run keeps its exit code."""
    share_one_malloc_arena()
    signal.signal(signal.SIGTERM, _raise_terminated)
    code: int | str | None = None
    try:
        app(args=optional_values(sys.argv[1:]), prog_name="ticketaudit")
    except KeyboardInterrupt as interrupt:
        code = _report_interrupt(interrupt)
    except SystemExit as done:
        code = done.code
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
