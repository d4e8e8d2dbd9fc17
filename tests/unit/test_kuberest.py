"""Where the operator's own API client finds its credentials: a kubeconfig
(paths relative to it, inline data, several files merged, an exec plugin)
or a pod's service account. Against a real API server:
tests/integration/test_kuberest.py."""

from __future__ import annotations

import base64
import json
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamgrid.core import kuberest
from streamgrid.core.kuberest import ConfigError, Credentials, load_credentials
from testbed.certs import make_certificates


def kubeconfig(
    path: Path,
    user: dict[str, Any],
    cluster: dict[str, Any] | None = None,
    current: str | None = "test",
    name: str = "test",
    namespace: str | None = None,
) -> Path:
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
    }
    if current:
        document["current-context"] = current
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(autouse=True)
def outside_a_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(kuberest, "SERVICE_ACCOUNT", tmp_path / "no-service-account")


def test_a_kubeconfig_token_and_a_ca_path_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = kubeconfig(
        tmp_path / "conf" / "config",
        {"token": "t0ken"},
        {"server": "https://10.0.0.1:6443/", "certificate-authority": "ca.crt"},
        namespace="cams",
    )
    found = load_credentials(str(path))
    assert found.server == "https://10.0.0.1:6443"
    assert found.ca_file == str(tmp_path / "conf" / "ca.crt")
    assert found.bearer() == "t0ken"
    assert found.namespace == "cams"
    assert "t0ken" not in repr(found)


def test_kubeconfig_from_the_environment_merged_first_name_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(tmp_path / "a", {"token": "first"}, current=None)
    second = kubeconfig(tmp_path / "b", {"token": "second"})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    found = load_credentials()
    assert found.bearer() == "first"  # the current context from the second, the user from the first


def test_the_default_kubeconfig_is_home_kube_config(tmp_path: Path) -> None:
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    kubeconfig(tmp_path / "home" / ".kube" / "config", {"token": "home"})
    assert load_credentials().bearer() == "home"


def test_inline_certificates_make_a_context_that_presents_the_client_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    certs = make_certificates(tmp_path / "certs")

    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    path = kubeconfig(
        tmp_path / "config",
        {"client-certificate-data": data(certs.cert), "client-key-data": data(certs.key)},
        {"server": "https://127.0.0.1:6443", "certificate-authority-data": data(certs.ca)},
    )
    found = load_credentials(str(path))
    assert found.ca_pem == certs.ca.read_text() and found.bearer() is None
    context = found.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1
    # ssl loads them from files: none left behind with the key in them.
    assert not list((tmp_path / "tmp").iterdir())


def test_a_field_that_is_not_base64_is_a_config_error(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "config",
        {"token": "x"},
        {"server": "https://h:1", "certificate-authority-data": "not base64!"},
    )
    with pytest.raises(ConfigError, match="base64"):
        load_credentials(str(path))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no current context"),
        ("current-context: gone\n", "no current context"),
        ("- a list\n", "not a mapping"),
        ("key: [unclosed\n", "cannot read"),
    ],
)
def test_an_unusable_kubeconfig_says_why(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "config").write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_credentials(str(tmp_path / "config"))


def test_a_missing_kubeconfig_says_which(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absent"):
        load_credentials(str(tmp_path / "absent"))


def in_a_pod(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    token: str,
    host: str,
    namespace: str | None = None,
) -> Path:
    """A service account's mounted files, and the API server's address as a pod sees it."""
    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text(token)
    if namespace is not None:
        (account / "namespace").write_text(namespace)
    monkeypatch.setattr(kuberest, "SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    return account


def test_in_a_pod_the_service_accounts_token_is_read_at_each_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = in_a_pod(tmp_path, monkeypatch, "one\n", "fd00::1", namespace="streamgrid")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    found = load_credentials()
    assert found.server == "https://[fd00::1]:443"
    assert found.ca_file == str(account / "ca.crt") and found.namespace == "streamgrid"
    assert found.bearer() == "one"
    (account / "token").write_text("two\n")  # the kubelet rotated it
    assert found.bearer() == "two"


def test_a_named_kubeconfig_wins_over_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_a_pod(tmp_path, monkeypatch, "pod", "10.96.0.1")
    path = kubeconfig(tmp_path / "config", {"token": "file"})
    assert load_credentials(str(path)).bearer() == "file"


def exec_plugin(tmp_path: Path, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """A kubeconfig exec entry: a script that gives the next answer each run
    and records what kubectl's protocol passes it."""
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os, sys\n"
        "folder = os.path.dirname(sys.argv[0])\n"
        "answers = json.load(open(os.path.join(folder, 'answers.json')))\n"
        "runs = os.path.join(folder, 'runs.jsonl')\n"
        "n = sum(1 for _ in open(runs)) if os.path.exists(runs) else 0\n"
        "open(runs, 'a').write(json.dumps({'info': os.environ['KUBERNETES_EXEC_INFO'], "
        "'extra': os.environ.get('EXTRA'), 'args': sys.argv[1:]}) + '\\n')\n"
        "answer = answers[min(n, len(answers) - 1)]\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': answer}))\n"
    )
    return {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(script), "--cluster", "c1"],
        "env": [{"name": "EXTRA", "value": "yes"}],
    }


def test_an_exec_plugin_gives_the_token_and_when_it_expires(tmp_path: Path) -> None:
    plugin = exec_plugin(
        tmp_path,
        [
            {"token": "first", "expirationTimestamp": "2030-01-01T00:00:00Z"},
            {"token": "second"},
        ],
    )
    found = load_credentials(str(kubeconfig(tmp_path / "config", {"exec": plugin})))
    assert found.bearer() == "first" and found.expires_at is not None
    assert found.expires_at.year == 2030
    run = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0])
    assert run["args"] == ["--cluster", "c1"] and run["extra"] == "yes"
    assert json.loads(run["info"])["kind"] == "ExecCredential"
    again = found.refreshed()
    assert again.bearer() == "second" and again.expires_at is None
    assert "first" not in repr(found) and "second" not in repr(again)


def test_an_exec_plugin_that_fails_is_a_config_error(tmp_path: Path) -> None:
    plugin = {"command": str(tmp_path / "no-such-plugin")}
    with pytest.raises(ConfigError, match="exec plugin"):
        load_credentials(str(kubeconfig(tmp_path / "config", {"exec": plugin})))


def test_a_client_for_a_url_that_is_not_a_server_is_refused() -> None:
    with pytest.raises(ConfigError, match="not an API server URL"):
        kuberest.KubeClient(Credentials(server="ftp://h"))
