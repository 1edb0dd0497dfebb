"""The README's gradio_client example ("Use it from Python and from agents") is true: every call names a real
endpoint with as many arguments as it takes and unpacks as many outputs as it returns, and the quick ones run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
QUICK = {"/tokenize", "/training_pairs", "/attention", "/attention_head", "/generate", "/generate_steps",
         "/instruct_loss_mask"}  # the others train (seconds to minutes): their shapes are checked, not run


def example_block() -> str:
    section = README.read_text(encoding="utf-8").split("## Use it from Python and from agents", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def predict_calls(block: str) -> list[tuple[ast.stmt, str, int, int | None, bool]]:
    """(statement, api_name, arguments, outputs unpacked or None for one name, whether a *rest takes some)."""
    calls = []
    for statement in ast.parse(block).body:
        value = getattr(statement, "value", None)
        if not (isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "predict"):
            continue
        api_name = next(k.value.value for k in value.keywords if k.arg == "api_name")
        target = statement.targets[0] if isinstance(statement, ast.Assign) else None
        if isinstance(target, ast.Tuple):
            starred = any(isinstance(element, ast.Starred) for element in target.elts)
            calls.append((statement, api_name, len(value.args), len(target.elts), starred))
        else:
            calls.append((statement, api_name, len(value.args), None, False))
    return calls


def test_the_example_calls_every_tab():
    names = {api_name for _, api_name, *_ in predict_calls(example_block())}
    assert {"/tokenize", "/attention", "/attention_head", "/generate", "/pretrain_run", "/classify_run",
            "/instruct_run"} <= names


@pytest.mark.app
def test_each_call_matches_its_endpoint_and_the_quick_ones_run(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    block = example_block()
    namespace = {"lab": client}
    setup = [s for s in ast.parse(block).body if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant)]
    exec(compile(ast.Module(body=setup, type_ignores=[]), "README", "exec"), namespace)  # BUNDLED = "..."
    for statement, api_name, n_args, n_out, starred in predict_calls(block):
        assert api_name in endpoints, f"{api_name} is not an endpoint"
        parameters, returns = endpoints[api_name]["parameters"], endpoints[api_name]["returns"]
        assert n_args == len(parameters), f"{api_name}: the README passes {n_args}, it takes {len(parameters)}"
        if n_out is None:
            assert len(returns) == 1, f"{api_name} returns {len(returns)} values, the README takes one"
        elif starred:
            assert len(returns) >= n_out - 1, f"{api_name} returns {len(returns)} values"
        else:
            assert n_out == len(returns), f"{api_name}: the README unpacks {n_out}, it returns {len(returns)}"
        if api_name in QUICK:
            exec(compile(ast.Module(body=[statement], type_ignores=[]), "README", "exec"), namespace)
    result, head = namespace["result"], namespace["head"]
    print("README /generate:", result["text"][:60], result["new_token_ids"][:5])
    assert len(result["new_token_ids"]) == 20 and result["token_ids"][-20:] == result["new_token_ids"]
    rows = head["weights"]
    assert len(rows) == len(head["tokens"]) and all(abs(sum(row) - 1) < 1e-3 for row in rows)  # (4 decimals)
