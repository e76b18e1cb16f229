"""lm-evaluation-harness itself against the live server: a local multiple-choice task (YAML and a
JSON-lines file written here, nothing downloaded), `local-completions` on /v1/completions with the
remote tokenizer (/tokenizer_info, /tokenize, /detokenize), scored by echo + logprobs.

The harness exits 0 even when a server gives it meaningless numbers, so its answers are checked:
every loglikelihood it logged must equal a plain forward pass of the same demo checkpoint in this
process (tests/support/scoring_reference.py), and its accuracy must be the one those references
give. The answers are chosen from the references so that the expected accuracy is neither 0 nor
1: a server that scored any other way would, with near certainty, move it.

Two tasks: one with a context ("Question: ...\\nAnswer:"), and one with an empty context, where
the harness puts its prefix token first, the BOS id it finds by sending /tokenizer_info's
bos_token to /tokenize (1 for Mistral's tokenizer).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")

from support.openai_helpers import MODEL  # noqa: E402
from support.scoring_reference import TOLERANCE, is_greedy, loglikelihood, tokenizer  # noqa: E402
from support.server_process import ServerProcess  # noqa: E402

DOCS = [
    ("The capital of France is", ["Paris", "London", "Berlin"]),
    ("Two plus two equals", ["four", "five", "seven", "a fish"]),
    ("The colour of the sky is", ["blue", "green", "red"]),
    ("Cats like to drink", ["milk", "petrol", "ink"]),
    ("The sun rises in the", ["east", "west"]),
    ("Water freezes at zero degrees", ["Celsius", "Fahrenheit", "Kelvin"]),
]
TEMPLATE = "Question: {{question}}\nAnswer:"
BOS = 1

TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{text}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def server(demo_data_dir):
    # float32: the server's sums agree with the reference forward pass to rounding
    proc = ServerProcess(demo_data_dir, "--dtype", "float32", env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


def encode_pair(context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The token ids lm-eval sends for (context, continuation) with the remote tokenizer: no
    special tokens; trailing spaces of the context move to the continuation; the continuation is
    what encoding both adds to the context's ids; an empty context is the prefix token (BOS)."""
    tok = tokenizer()
    if not context:
        return [BOS], tok.encode(continuation, bos=False)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tok.encode(context + continuation, bos=False)
    ctx = tok.encode(context, bos=False)
    return ctx, whole[len(ctx):]


def context_of(question: str, bare: bool) -> str:
    return "" if bare else TEMPLATE.replace("{{question}}", question)


def write_task(folder, name: str, bare: bool, data_dir) -> tuple[list[list[float]], float]:
    """The task's YAML and data; returns the reference loglikelihoods per doc and the accuracy
    they give. The gold answer is the most likely choice for the first four docs, the least
    likely for the others: accuracy 4/6."""
    references, rows = [], []
    for k, (question, choices) in enumerate(DOCS):
        lls = [loglikelihood(data_dir, *encode_pair(context_of(question, bare), " " + c)) for c in choices]
        best, worst = lls.index(max(lls)), lls.index(min(lls))
        references.append(lls)
        rows.append({"question": question, "choices": choices, "answer": best if k < 4 else worst})
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = "" if bare else TEMPLATE.replace("\n", "\\n")
    (folder / f"{name}.yaml").write_text(TASK.format(name=name, data=data, text=text))
    return references, 4 / 6


def run_lm_eval(server, folder, tasks: list[str]) -> subprocess.CompletedProcess:
    args = {"model": MODEL, "base_url": server.url + "/v1/completions", "tokenizer_backend": "remote",
            "tokenized_requests": "True", "max_retries": "1"}
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(folder / "hf"),
           "OMP_NUM_THREADS": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "lm_eval", "run", "--model", "local-completions",
         "--model_args", ",".join(f"{k}={v}" for k, v in args.items()), "--tasks", ",".join(tasks),
         "--include_path", str(folder), "--output_path", str(folder / "out"), "--log_samples"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_lm_eval_multiple_choice_scores_are_the_models_loglikelihoods(server, tmp_path, demo_data_dir):
    tasks = {"tiny_mc": False, "tiny_mc_bare": True}
    expected = {name: write_task(tmp_path, name, bare, demo_data_dir) for name, bare in tasks.items()}
    done = run_lm_eval(server, tmp_path, list(tasks))
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(open(glob.glob(str(tmp_path / "out" / "*" / "results_*.json"))[0]).read())["results"]
    for name, bare in tasks.items():
        references, acc = expected[name]
        assert results[name]["acc,none"] == pytest.approx(acc), name
        samples = [json.loads(line) for line in
                   open(glob.glob(str(tmp_path / "out" / "*" / f"samples_{name}_[0-9]*.jsonl"))[0])]
        assert sorted(s["doc_id"] for s in samples) == list(range(len(DOCS)))
        for s in samples:
            question, choices = DOCS[s["doc_id"]]
            got = [float(ll) for ll, _ in s["filtered_resps"]]
            assert got == pytest.approx(references[s["doc_id"]], abs=TOLERANCE), (name, question)
            contexts = {a["arg_0"] for a in s["arguments"].values()}
            assert contexts == {context_of(question, bare)}
            greedy = [g == "True" for _, g in s["filtered_resps"]]
            assert greedy == [is_greedy(demo_data_dir, *encode_pair(context_of(question, bare), " " + c))
                              for c in choices]


def test_lm_eval_detects_the_remote_tokenizer_and_reads_its_special_ids(server):
    from lm_eval.utils import RemoteTokenizer, check_remote_tokenizer_support

    base = server.url + "/v1/completions"
    assert check_remote_tokenizer_support(base)  # what tokenizer_backend=auto looks for
    remote = RemoteTokenizer(base)
    assert (remote.bos_token_id, remote.eos_token_id) == (1, 2)
    text = "Question: two plus two?\nAnswer: four"
    ids = remote.encode(text)
    assert ids == tokenizer().encode(text, bos=False)
    assert remote.decode(ids) == text
