"""The built-in chat page, end to end in a real headless Chromium: it asks for the API key, lists the shipped
tools, streams a turn where the model calls a tool the user picked, shows the call and the tool's real result,
and keeps the conversation for the next turn. A screenshot is saved and its path printed."""

from __future__ import annotations

import json
import os

import pytest

from nesso.engine import Engine
from nesso.server.app import create_app, running

CHROMIUM = "/usr/bin/chromium"
KEY = "page-test-key"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"needs Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def base_url(smollm_bf16):
    engine = Engine(smollm_bf16.model, smollm_bf16.tokenizer)
    with running(create_app(engine, "default", api_key=KEY, max_tokens_cap=48)) as url:
        yield url


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        yield page
        browser.close()


def test_chat_page_runs_a_tool_turn_in_chromium(page, base_url, tmp_path):
    asked_for_key = []

    def give_key(dialog) -> None:
        asked_for_key.append(dialog.message)
        dialog.accept(KEY)

    page.on("dialog", give_key)
    requests = []
    page.on("request", lambda r: requests.append(json.loads(r.post_data)) if r.url.endswith("/v1/agent/chat") else None)
    page.goto(base_url + "/")
    page.wait_for_selector('#tools input[value="list_tables"]', timeout=30_000)
    assert asked_for_key and "API key" in asked_for_key[0]
    names = page.eval_on_selector_all('#tools input[name="tool"]', "els => els.map(e => e.value)")
    assert set(names) == {"calculator", "convert_units", "get_current_time", "list_tables", "query_database"}
    assert page.inner_text("#model") == "default"
    for name in names:  # offer only the database listing, and make the model call it
        if name != "list_tables":
            page.uncheck(f'#tools input[value="{name}"]')
    page.select_option("#tool-choice", "list_tables")

    page.fill("#prompt", "Which tables are in the shop database?")
    page.click("#send")
    call = page.wait_for_selector(".step.call", timeout=120_000)
    assert call.inner_text() == "→ list_tables({})"
    result = page.wait_for_selector(".step.result", timeout=60_000)
    assert "customers" in result.inner_text() and "order_items" in result.inner_text()
    page.wait_for_selector("#send:not([disabled])", timeout=180_000)
    assert requests[0]["tools"] == ["list_tables"] and requests[0]["tool_choice"] == "list_tables"
    assert page.inner_text(".msg.user") == "Which tables are in the shop database?"
    shot = tmp_path / "nesso-chat-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nchat page screenshot: {shot}")
    assert shot.stat().st_size > 10_000

    # the next turn carries the whole conversation, tool call and result included
    page.select_option("#tool-choice", "none")
    page.fill("#prompt", "Thanks! How many tables did you find?")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.msg.user').length === 2")
    page.wait_for_selector("#send:not([disabled])", timeout=180_000)
    history = requests[1]["messages"]
    roles = [m["role"] for m in history]
    assert roles[0] == "system" and roles[-1] == "user" and "tool" in roles
    assert any(m.get("tool_calls") and m["tool_calls"][0]["function"]["name"] == "list_tables" for m in history)
    assert page.locator(".msg.error").count() == 0
    assert page.locator(".step.call").count() >= 1
