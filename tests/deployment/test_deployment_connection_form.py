"""The ``remsvc`` connection form as a user meets it: Debian's chromium (headless)
against the deployment's real API server on loopback. The test fills the form, saves
it, presses Test against a running server and then a stopped one, and checks what the
user reads at each step."""

from __future__ import annotations

import json
from typing import Any

import pytest
from browser import chromium, require_browser, wait_until
from deploy_airflow import AirflowDeployment
from deploy_remsvc import SERVER_TOKEN
from support.server_process import ServerProcess

from remsvc_provider._connection_form import FORM_EXTRAS, help_text

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(300)]

CONN_ID = "remsvc_from_the_form"


def by(kind: str, value: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return getattr(By, kind), value


def page_text(driver: Any) -> str:
    return str(driver.find_element(*by("TAG_NAME", "body")).text)


def fill_the_form(driver: Any, server: ServerProcess, ca_cert: str) -> str:
    """Fill the form; returns the page's text while the standard fields were open."""
    from selenium.webdriver.common.keys import Keys

    driver.find_element(*by("XPATH", "//button[normalize-space()='Add Connection']")).click()
    driver.find_element(*by("NAME", "connection_id")).send_keys(CONN_ID)
    kind = driver.find_element(*by("CSS_SELECTOR", "input[role='combobox']"))
    kind.send_keys("RemSvc")
    wait_until("the RemSvc gRPC type", lambda: "RemSvc gRPC" in page_text(driver))
    kind.send_keys(Keys.ENTER)
    wait_until("the form's fields", lambda: driver.find_elements(*by("NAME", "host")))
    driver.find_element(*by("NAME", "host")).send_keys("localhost")
    driver.find_element(*by("NAME", "port")).send_keys(str(server.port))
    driver.find_element(*by("NAME", "password")).send_keys(SERVER_TOKEN)
    standard = page_text(driver)
    driver.find_element(*by("XPATH", "//button[normalize-space()='Extra Fields']")).click()
    use_tls = driver.find_element(*by("NAME", "element_use_ssl"))
    driver.execute_script("arguments[0].click()", use_tls)  # the box itself is styled away
    driver.find_element(*by("NAME", "element_ca_cert_path")).send_keys(ca_cert)
    return standard


def press_test(driver: Any, expected: str) -> str:
    """Press the saved connection's Test button; the message the UI shows for it."""
    before = page_text(driver).count(expected)
    driver.find_element(*by("CSS_SELECTOR", "button[aria-label='Test Connection']")).click()
    wait_until(f"a message with {expected!r}", lambda: page_text(driver).count(expected) > before)
    lines = [line for line in page_text(driver).splitlines() if expected in line]
    return lines[-1]


def test_the_form_in_a_browser(
    deployment: AirflowDeployment, remsvc_server: ServerProcess, tls_files: Any
) -> None:
    require_browser()
    with chromium() as driver:
        driver.get(f"{deployment.base_url}/connections")
        standard = fill_the_form(driver, remsvc_server, tls_files.ca_cert)
        form = page_text(driver)
        token_field = driver.find_element(*by("NAME", "password"))
        host_field = driver.find_element(*by("NAME", "host"))

        # What the user reads in the form: labels, help with samples, a masked token.
        assert {"Host", "Bearer token", "Port"} <= set(standard.splitlines())
        assert not {"Login", "Schema"} & set(standard.splitlines())
        assert token_field.get_attribute("type") == "password"
        assert host_field.get_attribute("placeholder") == "remsvc-host.example.com"
        for extra in FORM_EXTRAS:
            assert extra.label in form, extra.name
            assert help_text(extra) in form, extra.name
        assert not driver.find_elements(*by("TAG_NAME", "datalist"))  # no suggestion lists
        assert "Start typing to see options" not in form
        assert SERVER_TOKEN not in driver.page_source.replace(
            str(token_field.get_attribute("value")), ""
        )

        driver.find_element(*by("XPATH", "//button[normalize-space()='Save']")).click()
        wait_until("the saved connection in the list", lambda: CONN_ID in page_text(driver))
        stored = deployment.api.get(f"/connections/{CONN_ID}")
        extra = json.loads(stored["extra"])
        assert (stored["conn_type"], stored["host"], stored["port"]) == (
            "remsvc",
            "localhost",
            remsvc_server.port,
        )
        assert extra["use_ssl"] is True
        assert extra["ca_cert_path"] == tls_files.ca_cert

        answered = press_test(driver, "answered Ping")
        remsvc_server.close()
        refused = press_test(driver, "Nothing listens at")
        seen = page_text(driver) + driver.page_source

    assert f"RemSvc server at localhost:{remsvc_server.port}, TLS, bearer token" in answered
    assert f"Nothing listens at localhost:{remsvc_server.port}" in refused
    assert "is the server running, and are host and port right?" in refused
    assert SERVER_TOKEN not in seen
    assert "transient" not in refused.lower()
