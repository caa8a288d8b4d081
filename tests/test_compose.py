"""compose.yaml, the multi-node deployment, against the code (no Docker engine runs here): the
pinned Kafka version, the topic spec, the local broker's config writer, the `renkei` CLI."""

from __future__ import annotations

import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from itertools import takewhile
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from broker import cluster, config, jars, process, topics
from broker.credentials import Credentials
from cards import crl
from renkei.cli import main

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
KAFKA_IMAGE = "apache/kafka"
# what differs by node, address or secret between the local broker and a container
PER_NODE = frozenset({
    "node.id", "controller.quorum.bootstrap.servers", "listeners", "advertised.listeners",
    "log.dirs", "listener.name.client.scram-sha-512.sasl.jaas.config",
    "listener.name.controller.plain.sasl.jaas.config",
})
PER_MACHINE = frozenset(config.request_threads())  # compose's brokers have machines of their own
NOT_COMPARED = PER_NODE | PER_MACHINE
SECRET = "<secret>"
SHELL_OPERATORS = frozenset({"&&", "||", "|", ";", "&", "(", ")"})
HERE_DOCUMENT = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
A_PASSWORD = re.compile(r"password", re.IGNORECASE)  # a reference to one, or a literal's key


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def kafka_services(svcs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in svcs.items()
            if str(s.get("image", "")).split(":")[0] == KAFKA_IMAGE}


def env_property(name: str) -> str | None:
    """The broker property the apache/kafka image makes of an env variable (KAFKA_A_B___C →
    a.b-c, KAFKA_A__B → a_b), or None for a variable that is not a property."""
    if not name.startswith("KAFKA_"):
        return None
    key = name.removeprefix("KAFKA_").lower()
    return key.replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")


def broker_properties(service: dict[str, Any]) -> dict[str, str]:
    env = service["environment"]
    assert isinstance(env, dict), "a Kafka service's environment must be a mapping"
    return {prop: str(value) for key, value in env.items()
            if (prop := env_property(key)) is not None}


def local_properties() -> dict[str, str]:
    """What broker/config.py writes for one node of a local 3-node cluster."""
    local = cluster.plan(cluster.DEFAULT_CLIENT_PORT, cluster.DEFAULT_CONTROLLER_PORT, nodes=3)
    text = config.server_properties(local, local.nodes[0], Path("/data"),
                                    Credentials(config.ADMIN, SECRET),
                                    Credentials(config.CONTROLLER, SECRET))
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def masked(jaas: str) -> str:
    """A JAAS line with its ${VAR} password references replaced by a marker."""
    return re.sub(r'"\$\{[^}"]*\}"', f'"{SECRET}"', " ".join(jaas.split()))


def argv_and_script(service: dict[str, Any]) -> tuple[list[str], str | None]:
    """A service's command: its words, and the script of a `sh -c`/`bash -c` (else None)."""
    command = service.get("command")
    if command is None:
        return [], None
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv and argv[0] in ("sh", "bash") and len(argv) >= 3 and argv[1].startswith("-"):
        return argv, argv[2]
    return argv, None


def here_documents(script: str) -> tuple[list[str], list[tuple[str, str]]]:
    """A shell script's lines that are commands, and each here-document as (the command lines
    before it, its body): a body goes to a file or a command's stdin, on no command line."""
    commands: list[str] = []
    documents: list[tuple[str, str]] = []
    lines = iter(script.splitlines())
    for line in lines:
        commands.append(line)
        for end in HERE_DOCUMENT.findall(line):
            documents.append(("\n".join(commands), "\n".join(_until(end, lines))))
    return commands, documents


def _until(end: str, lines: Iterator[str]) -> list[str]:
    """The lines up to the one that is `end` (taken too, not returned)."""
    return list(takewhile(lambda text: text.strip() != end, lines))


def command_lines(service: dict[str, Any]) -> Iterator[list[str]]:
    """Every `renkei …` invocation in a service's command: a list, or a `sh -c` script."""
    argv, script = argv_and_script(service)
    if script is not None:
        for line in script.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in SHELL_OPERATORS:
                    if words[:1] == ["exec"]:
                        words = words[1:]
                    if words[:1] == ["renkei"]:
                        yield words
                    words = []
                else:
                    words.append(token)
    elif argv and argv[0] == "renkei":
        yield argv


def resolve(argv: list[str]) -> click.Command:
    """The click command an argv names, its options parsed as the CLI would parse them."""
    return parsed(argv).command


def parsed(argv: list[str]) -> click.Context:
    """The context of the click command an argv names: its options parsed as the CLI would."""
    assert argv[0] == "renkei"
    command: click.Command = main
    words = argv[1:]
    parent: click.Context | None = None
    path = ["renkei"]
    while isinstance(command, click.Group):
        assert words, f"`{' '.join(argv)}` names a group, not a command"
        parent = click.Context(command, info_name=path[-1], parent=parent)
        sub = command.get_command(parent, words[0])
        assert sub is not None, f"`{' '.join(argv)}`: no command {words[0]!r} in `{' '.join(path)}`"
        path.append(words[0])
        command, words = sub, words[1:]
    # unknown options, bad values and missing arguments raise click.UsageError here
    return command.make_context(path[-1], list(words), parent=parent)


def all_commands() -> list[tuple[str, list[str]]]:
    return [(name, argv) for name, svc in services().items() for argv in command_lines(svc)]


# --- the Kafka brokers ----------------------------------------------------------------------

def test_three_kafka_brokers_on_the_pinned_version() -> None:
    kafka = kafka_services(services())
    assert len(kafka) == 3, f"want three apache/kafka brokers, found {sorted(kafka)}"
    wanted = f"{KAFKA_IMAGE}:{jars.kafka_version()}"
    for name, svc in kafka.items():
        assert svc["image"] == wanted, f"{name} runs {svc['image']}, the project pins {wanted}"


def test_a_kraft_quorum_of_the_three() -> None:
    kafka = kafka_services(services())
    ids: dict[int, str] = {}
    for name, svc in kafka.items():
        props = broker_properties(svc)
        assert props["process.roles"] == "broker,controller", name
        node_id = int(props["node.id"])
        assert node_id not in ids, f"{name} and {ids.get(node_id)} share node id {node_id}"
        ids[node_id] = svc.get("hostname", name)
        host = ids[node_id]
        client_port = re.search(r"CLIENT://[^:]*:(\d+)", props["listeners"])
        assert client_port, f"{name}: no CLIENT listener"
        assert props["advertised.listeners"] == f"CLIENT://{host}:{client_port.group(1)}", name
    voters = {props["controller.quorum.voters"]
              for props in map(broker_properties, kafka.values())}
    assert len(voters) == 1, f"the brokers disagree on the quorum: {voters}"
    parsed = {}
    for voter in voters.pop().split(","):
        node, _, address = voter.partition("@")
        parsed[int(node)] = address
    for node_id, host in ids.items():
        controller_port = re.search(
            r"CONTROLLER://[^:]*:(\d+)", broker_properties(
                next(s for s in kafka.values() if s.get("hostname") == host))["listeners"])
        assert controller_port, f"{host}: no CONTROLLER listener"
        assert parsed.get(node_id) == f"{host}:{controller_port.group(1)}", (
            f"voter {node_id} is {parsed.get(node_id)}, its broker is {host}")
    assert sorted(parsed) == sorted(ids), f"voters {sorted(parsed)}, brokers {sorted(ids)}"


def test_brokers_match_the_local_broker_config() -> None:
    """Every setting broker/config.py writes for a 3-node cluster, bar addresses, node ids,
    paths and passwords, is what the containers get."""
    local = local_properties()
    for name, svc in kafka_services(services()).items():
        props = broker_properties(svc)
        for key, value in local.items():
            if key in NOT_COMPARED:
                continue
            assert props.get(key) == value, f"{name}: {key}={props.get(key)!r}, local {value!r}"


def test_security_settings() -> None:
    for name, svc in kafka_services(services()).items():
        props = broker_properties(svc)
        assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512", name
        assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512", name
        assert props["authorizer.class.name"].endswith(".StandardAuthorizer"), name
        assert props["allow.everyone.if.no.acl.found"] == "false", name
        assert props["auto.create.topics.enable"] == "false", name
        assert "PLAINTEXT" not in props["listener.security.protocol.map"].replace(
            "SASL_PLAINTEXT", ""), f"{name}: a listener without authentication"
        scram = props["listener.name.client.scram-sha-512.sasl.jaas.config"]
        plain = props["listener.name.controller.plain.sasl.jaas.config"]
        assert masked(scram) == config._jaas_scram(Credentials(config.ADMIN, SECRET)), name
        assert masked(plain) == config._jaas_plain(Credentials(config.CONTROLLER, SECRET)), name


def test_replication_follows_the_topic_spec() -> None:
    size = len(kafka_services(services()))
    specs = [spec.for_cluster(size)
             for spec in [*topics.platform_topics(), *topics.holder_topics("x")]]
    replication = {spec.replication for spec in specs}
    min_isr = {spec.min_insync for spec in specs}
    assert len(replication) == 1 and len(min_isr) == 1, "the spec's topics differ: update this"
    for name, svc in kafka_services(services()).items():
        props = broker_properties(svc)
        for key in ("default.replication.factor", "offsets.topic.replication.factor",
                    "transaction.state.log.replication.factor",
                    "share.coordinator.state.topic.replication.factor"):
            assert {int(props[key])} == replication, f"{name}: {key}={props[key]}"
        for key in ("min.insync.replicas", "transaction.state.log.min.isr",
                    "share.coordinator.state.topic.min.isr"):
            assert {int(props[key])} == min_isr, f"{name}: {key}={props[key]}"


# --- the Renkei services --------------------------------------------------------------------

def test_services_find_all_three_brokers() -> None:
    kafka = kafka_services(services())
    hosts = {f"{svc.get('hostname', name)}:"
             + re.findall(r"CLIENT://[^:]*:(\d+)", broker_properties(svc)["listeners"])[0]
             for name, svc in kafka.items()}
    renkei = {name: svc for name, svc in services().items() if name not in kafka}
    assert renkei
    for name, svc in renkei.items():
        env = svc.get("environment", {})
        assert set(str(env.get(cluster.BOOTSTRAP_ENV, "")).split(",")) == hosts, (
            f"{name}: {cluster.BOOTSTRAP_ENV}={env.get(cluster.BOOTSTRAP_ENV)}, brokers {hosts}")
        assert env.get("RENKEI_STATE") == "/state", name
        targets = [str(v).split(":")[-2 if str(v).endswith(":ro") else -1]
                   for v in svc.get("volumes", [])]
        assert targets and all(t == "/state" or t.startswith("/state/") for t in targets), name


def test_the_platform_scales() -> None:
    platform = services()["platform"]
    assert "container_name" not in platform, "a container name stops `--scale platform=N`"
    assert not platform.get("ports"), "a host port stops `--scale platform=N`"
    assert [argv[:3] for argv in command_lines(platform)] == [["renkei", "platform", "run"]]


def test_each_scaled_platform_replica_logs_under_a_name_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every replica of `--scale platform=N` ran the same command, without --instance: each
    logged as "platform 1". One given no instance is named after its host, a container's own."""
    (argv,) = command_lines(services()["platform"])

    def instance(host: str, *more: str) -> str:
        monkeypatch.setattr(socket, "gethostname", lambda: host)
        return str(parsed([*argv, *more]).params["instance"])

    replicas = ("3f9c0a1b2d4e", "7a8b9c0d1e2f")  # containers' host names: their ids
    assert [instance(host) for host in replicas] == list(replicas)
    assert instance(replicas[0], "--instance", "2") == "2"  # as the town names its own


def test_audit_and_portal_run() -> None:
    svcs = services()
    wanted = {"audit": ["renkei", "audit", "run"], "portal": ["renkei", "portal"],
              "registry": ["renkei", "registry", "serve"],
              "authority": ["renkei", "authority", "serve"]}
    for name, prefix in wanted.items():
        assert name in svcs, f"no {name} service"
        argvs = list(command_lines(svcs[name]))
        assert any(a[:len(prefix)] == prefix for a in argvs), f"{name} runs {argvs}"


def _option(service: str, option: str) -> set[str]:
    """The values `option` is given in the service's `renkei` command lines."""
    return {argv[i + 1] for argv in command_lines(services()[service])
            for i, arg in enumerate(argv[:-1]) if arg == option}


def test_the_registry_takes_card_logins_signed_for_the_portals_origin_alone() -> None:
    """A card login the portal shows the registry side is signed for the portal's origin; any
    other is refused there, so the two must name the same one."""
    origins = _option("portal", "--origin")
    assert origins and _option("registry", "--portal-origin") == origins


def test_the_cas_lists_are_published_well_before_they_go_stale() -> None:
    """The portal and the registry side refuse every card of a CA whose list is stale: a service
    publishes them anew, at least as often as a quarter of the time a list is good for."""
    every = _option("crl", "--every")
    assert every and all(crl.interval(e) <= crl.EVERY for e in every), every
    assert [argv[:3] for argv in command_lines(services()["crl"])] == [["renkei", "card", "crl"]]


def test_every_renkei_command_exists() -> None:
    found = all_commands()
    assert len(found) >= 8, f"too few `renkei` commands found: {found}"
    for service, argv in found:
        try:
            resolve(argv)
        except click.UsageError as exc:
            pytest.fail(f"{service}: `{' '.join(argv)}`: {exc.format_message()}")


def test_resolve_rejects_what_the_cli_lacks() -> None:
    for argv in (["renkei", "nope"], ["renkei", "platform"],
                 ["renkei", "portal", "--host", "0.0.0.0"],
                 ["renkei", "broker", "provision", "--brokers", "zero"]):
        with pytest.raises((AssertionError, click.UsageError)):
            resolve(argv)


def test_no_secret_literal() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    values = re.findall(r"password\s*[=:]\s*\"?([^\"\s;,\]]+)", text, flags=re.IGNORECASE)
    assert values, "no password setting found: the check would prove nothing"
    for value in values:
        assert value.startswith("$"), f"a password literal in compose.yaml: {value[:3]}…"
    for name, svc in services().items():
        for key, value in dict(svc.get("environment", {})).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|CLUSTER_ID", key):
                assert str(value).startswith("${"), f"{name}: {key} is a literal"


def test_no_password_on_a_command_line() -> None:
    """Any local user reads any process's arguments (/proc/<pid>/cmdline, `ps`), in a container
    as on a host: a password goes to a process in its environment or in a file, here a
    here-document written under `umask 077` (the broker's format step: a Java argument file, as
    the local broker's), never as an argument, not even through a script's variable."""
    in_files = 0
    for name, svc in services().items():
        argv, script = argv_and_script(svc)
        commands, documents = here_documents(script or "")
        for line in (*(argv if script is None else argv[:2]), *commands):
            assert not A_PASSWORD.search(line), f"{name}: a password on a command line: {line}"
        for before, body in documents:
            if A_PASSWORD.search(body):
                in_files += 1
                assert re.search(r"^\s*umask 077\s*$", before, re.MULTILINE), (
                    f"{name}: a password written to a file others may read")
    assert in_files == len(kafka_services(services())), "the check would prove nothing"


def test_a_first_start_formats_the_storage_with_the_password_in_no_argument(
        tmp_path: Path) -> None:
    """A broker's start script, run by bash with the image's paths moved under tmp_path: the
    image's kafka-run-class.sh a stand-in that records the arguments it was given (the JVM gets
    them after its own options) and the mode of an argument file among them, then runs them on
    the local broker's Kafka jars (the pinned version); kafka-storage.sh as the image's; the
    image's own start-up a no-op."""
    service = kafka_services(services())["kafka-1"]
    _, script = argv_and_script(service)
    assert script is not None
    password, cluster_id = secrets.token_urlsafe(32), cluster.new_cluster_id()
    libs, _ = jars.fetch()
    tools = {"kafka-run-class.sh": f"""printf '%s\\n' "$@" > {tmp_path}/argv
case "$1" in @*) stat -c %a "${{1#@}}" > {tmp_path}/mode ;; esac
exec {process.java()} -cp '{libs}/*' "$@"
""", "kafka-storage.sh": 'exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"\n'}
    for tool, text in tools.items():
        (tmp_path / "bin" / tool).parent.mkdir(exist_ok=True)
        (tmp_path / "bin" / tool).write_text("#!/bin/sh\n" + text)
        (tmp_path / "bin" / tool).chmod(0o700)
    (tmp_path / "tmp").mkdir()
    moved = (script.replace("$$", "$")  # compose's escape: the shell gets `$`
             .replace("/tmp/", f"{tmp_path}/tmp/")  # before others: tmp_path may be in /tmp
             .replace("/var/lib/kafka/data", str(tmp_path / "data"))
             .replace("/opt/kafka/bin/", f"{tmp_path}/bin/")
             .replace("exec /etc/kafka/docker/run", "echo started"))
    env = {key: str(value) for key, value in service["environment"].items()
           if "${" not in str(value)}
    env |= {"CLUSTER_ID": cluster_id, "ADMIN_PASSWORD": password,
            "KAFKA_LOG_DIRS": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(["bash", "-ec", moved], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0 and run.stdout.endswith("started\n"), run.stderr[-2000:]
    argv = (tmp_path / "argv").read_text()
    assert password not in argv, "the admin's password was on the JVM's command line"
    assert argv == f"@{tmp_path}/tmp/format.args\n"
    assert (tmp_path / "mode").read_text().strip() == "600"
    assert not list((tmp_path / "tmp").iterdir()), "the argument file is left behind"
    assert cluster_id in (tmp_path / "data" / "meta.properties").read_text()
    (checkpoint,) = (tmp_path / "data").glob("__cluster_metadata-0/*.checkpoint")
    assert b"admin" in checkpoint.read_bytes()  # its SCRAM credential, salted and hashed
    assert password.encode() not in checkpoint.read_bytes()


def _note_above(service: str) -> str:
    """The comment lines right above `service`'s key in compose.yaml, joined."""
    lines = COMPOSE.read_text(encoding="utf-8").splitlines()
    at = lines.index(f"  {service}:")
    note = list(takewhile(lambda line: line.lstrip().startswith("#"), reversed(lines[:at])))
    return " ".join(line.strip().lstrip("#").strip() for line in reversed(note))


def test_the_portals_note_says_what_it_does_before_the_audit_store_is_there() -> None:
    """My Portal starts and serves before the audit consumer's first run has made the store and
    the head key, or while the store cannot be opened, its pages that read the access log
    answering 503 (tests/test_portal_no_store.py); the note said it stopped and was restarted."""
    note = _note_above("portal")
    assert note, "no note above the portal service"
    assert not re.search(r"\bstops\b|\brestarted\b", note), note
    assert "503" in note, note


# --- the image ------------------------------------------------------------------------------

def test_the_image_is_built_from_the_dockerfile() -> None:
    built = {name: svc["build"] for name, svc in services().items() if "build" in svc}
    assert built, "no service builds the Renkei image"
    for name, build in built.items():
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get(
            "dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file(), f"{name}: no {context}/{dockerfile}"


def test_the_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line.split(None, 1) for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")
                    and not line.startswith(" ")]
    first = next(i for i in instructions if i[0].upper() != "ARG")
    assert first[0].upper() == "FROM" and first[1].startswith("python:3.11-slim"), first
    users = [i[1].strip() for i in instructions if i[0].upper() == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert re.search(r"pip install[^\n]* \.(\s|$)", text), "the image must `pip install .`"
    for kind, rest in (i for i in instructions if i[0].upper() in ("ENV", "ARG")):
        assert not re.search(r"PASSWORD|SECRET|TOKEN", rest, flags=re.IGNORECASE), (
            f"a secret in the image: {kind} {rest}")
    copied = {i[1].split()[0] for i in instructions if i[0].upper() == "COPY"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {name.rstrip("*") for name in
                pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert "." in copied or packages <= copied, f"not copied: {sorted(packages - copied)}"


def test_the_build_context_leaves_state_and_secrets_out() -> None:
    ignored = {line.strip().rstrip("/") for line in
               (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")}
    missing = {".state", ".env", "**/.state*", "**/.env*", ".venv", "results", "build",
               ".git"} - ignored
    assert not missing, f".dockerignore lacks {sorted(missing)}"


def test_docker_compose_config() -> None:
    """`docker compose config` validates the file against the Compose schema (offline)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client here: the Compose schema check runs where docker is")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("the docker client here has no compose plugin (`docker compose version` "
                    "fails): the Compose schema check runs where it has one")
    env = {"CLUSTER_ID": "test-cluster-id", "ADMIN_PASSWORD": "x", "CONTROLLER_PASSWORD": "y",
           "RENKEI_STATE_DIR": "/tmp/renkei-compose-test", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
