"""The MCP server's tools: readable names, descriptions that say what they return, the documented setting."""

from __future__ import annotations

import re

import pytest

import app


@pytest.fixture(scope="module")
def tools():
    """(name, description) of every tool, as Gradio's MCP server lists them (its /gradio_api/mcp/schema)."""
    from gradio.mcp import GradioMCPServer

    server = GradioMCPServer(app.build_demo())
    listed = []
    for name, endpoint in server.tool_to_endpoint.items():
        description, _ = server.get_fn_description(server.get_block_fn_from_endpoint_name(endpoint), name)
        listed.append((name, endpoint, description))
    return listed


def test_at_least_ten_tools_with_readable_names_and_descriptions(tools):
    assert len(tools) >= 30
    for name, _, description in tools:
        assert re.fullmatch(r"[a-z][a-z_]+", name) and not re.search(r"_\d+$", name), name
        assert len(description) >= 40, (name, description)
    lab_tools = {name: endpoint for name, endpoint, _ in tools if not endpoint.startswith("/class_")}
    assert all(endpoint == f"/{name}" for name, endpoint in lab_tools.items())  # a tool is named as its endpoint
    for name in ("tokenize", "generate", "attention_head", "generate_steps", "pretrain_run", "classify_run",
                 "instruct_run", "instruct_loss_mask"):
        assert name in lab_tools


def test_run_tools_say_what_they_return(tools):
    descriptions = {name: description for name, _, description in tools}
    assert "Returns: A summary dict" in descriptions["pretrain_run"]
    assert "checkpoint" in descriptions["pretrain_run"]
    assert "token ids" in descriptions["generate"]
    assert "pretrain_start_experiment" not in {endpoint.strip("/") for _, endpoint, _ in tools}  # the page's own


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", None)])
def test_llm_lab_mcp_setting(monkeypatch, value, expected):
    monkeypatch.setenv("LLM_LAB_MCP", value)
    assert app.mcp_server() is expected
    assert app.launch_options()["mcp_server"] is expected
