"""Starting and stopping the local KRaft broker nodes: `renkei broker up | down | status`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from broker import class_archive, config, credentials, jars
from broker import cluster as cluster_store
from broker.cluster import HOST, Cluster, Node
from broker.ports import free_port_pair
from renkei.logs import begun, gone_on
from renkei.state import folder_made, state_folder, write_private

JAVA_MAJOR = 17
JVMS = Path("/usr/lib/jvm")  # where Debian's and Temurin's packages put JDKs
HEAP = os.environ.get("RENKEI_BROKER_HEAP", "1g")
SERVER_JVM = (f"-Xmx{HEAP}", f"-Xms{HEAP}", "-XX:+UseG1GC")
# a one-shot tool (the storage format) compiles little and collects little: C1 alone and the
# serial collector start it in ~1.1 s instead of ~1.5 s, with half the CPU time
TOOL_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# util-linux's setpriv execs the JVM with SIGTERM due to it when the thread that started it ends;
# so tethered nodes are started by one thread that lasts as long as this process does, whichever
# thread asks (a worker thread, as under asyncio.to_thread, ends long before its run)
TETHER = ["setpriv", "--pdeathsig", "TERM", "--"]
_TETHERING = ThreadPoolExecutor(1, thread_name_prefix="broker-tether")
_TETHERED: set[tuple[str, int]] = set()  # (cluster id, node id) started tethered by this process


class BrokerError(RuntimeError):
    """The broker cannot be started or stopped as asked; the message says why."""


@dataclass(frozen=True)
class NodeStatus:
    node: Node
    pid: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


def java() -> str:
    """The java executable: JAVA_HOME's if set, else the newest of the JDKs installed in
    JVMS and the `java` on the PATH (the newest JIT and GC); Java 17+."""
    home = os.environ.get("JAVA_HOME")
    found = [str(Path(home) / "bin" / "java")] if home else [
        *map(str, JVMS.glob("*/bin/java")), shutil.which("java")]
    majors = {path: java_release(path) for path in found if path and Path(path).exists()}
    if not majors:
        raise BrokerError(
            f"Java is missing: Kafka needs Java {JAVA_MAJOR}+ (install a JDK or set JAVA_HOME)"
        )
    path = max(majors, key=majors.__getitem__)
    if majors[path] < JAVA_MAJOR:
        raise BrokerError(f"Kafka needs Java {JAVA_MAJOR}+; the newest found, {path}, is "
                          + (f"Java {majors[path]}" if majors[path] else "of no version it says"))
    return path


def java_release(java_bin: str) -> int:
    """The Java release `java_bin` is (0: it does not say, or does not run)."""
    try:
        out = subprocess.run([java_bin, "-version"], capture_output=True, text=True,
                             check=False).stderr
    except OSError:
        return 0
    found = re.search(r'version "(\d+)', out)
    return int(found.group(1)) if found else 0


def _files(cl: Cluster, node: Node) -> dict[str, Path]:
    base = cl.node_dir(node)
    return {
        "data": base / "data",
        "logs": base / "logs",
        "properties": base / "server.properties",
        "log4j2": base / "log4j2.yaml",
        "stdout": base / "logs" / "stdout.log",  # the JVM's own output (log4j2 writes server.log)
        "pid": base / "pid",
    }


def _cmdline(pid: int) -> bytes:
    """The process's command line (empty if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    return b"kafka.Kafka" in _cmdline(pid)


def _pid(cl: Cluster, node: Node) -> int | None:
    pid_file = _files(cl, node)["pid"]
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    return pid if _alive(pid) else None


def status() -> tuple[Cluster, list[NodeStatus]]:
    cl = cluster_store.load()
    return cl, [NodeStatus(node, _pid(cl, node)) for node in cl.nodes]


def _port_free(port: int) -> bool:
    """Nobody listens on the port. A bind may fail while connections of a killed broker are
    still closing on it, which do not keep Kafka (SO_REUSEADDR) from listening there again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
            return True
        except OSError:
            pass
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return False  # a program listens there
    except OSError:
        return True


def _classpath() -> str:
    libs, _ = jars.fetch()
    return f"{libs}/*"


def _java_command(java_bin: str, jvm: tuple[str, ...], log4j2: Path, *args: str) -> list[str]:
    return [java_bin, *jvm, f"-Dlog4j2.configurationFile={log4j2}", "-cp", _classpath(), *args]


def _write_configs(cl: Cluster, node: Node) -> dict[str, Path]:
    files = _files(cl, node)
    admin = credentials.issue(config.ADMIN)
    controller = credentials.issue(config.CONTROLLER)
    folder_made(files["logs"])
    write_private(
        files["properties"],
        config.server_properties(cl, node, files["data"], admin, controller),
    )
    files["log4j2"].write_text(config.log4j2_yaml(files["logs"]), encoding="utf-8")
    return files


def _directory_ids(cl: Cluster) -> dict[int, str]:
    return {node.node_id: cluster_store.new_cluster_id() for node in cl.nodes}


def _format(cl: Cluster, java_bin: str) -> None:
    """Format every node's storage: the KRaft quorum and the admin's SCRAM credential.

    One node formats itself `--standalone`; several get the same cluster id and the same
    `--initial-controllers id@host:port:directory-id,...` (a dynamic quorum of all of them),
    formatted side by side.
    """
    admin = credentials.issue(config.ADMIN)
    scram = f"SCRAM-SHA-512=[name={admin.username},password={admin.password}]"
    dir_ids = _directory_ids(cl)
    if cl.size == 1:
        quorum = ["--standalone"]
    else:
        quorum = ["--initial-controllers", ",".join(
            f"{n.node_id}@{n.controller_address}:{dir_ids[n.node_id]}" for n in cl.nodes
        )]
    running: dict[int, tuple[subprocess.Popen[str], Path]] = {}
    for node in cl.nodes:
        files = _write_configs(cl, node)
        argfile = files["properties"].with_name("format.args")
        write_private(argfile, _argfile("kafka.tools.StorageTool", "format",
                                        f"--cluster-id={cl.cluster_id}", "-c",
                                        str(files["properties"]), *quorum, "--add-scram", scram))
        running[node.node_id] = subprocess.Popen(
            _java_command(java_bin, TOOL_JVM, files["log4j2"], f"@{argfile}"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), argfile
    failed = []
    for node_id, (proc, argfile) in running.items():
        _, err = proc.communicate()
        argfile.unlink()
        if proc.returncode != 0:
            # the tool's output echoes the SCRAM record: its last lines only, no password
            said = "\n".join(err.strip().splitlines()[-5:]).replace(admin.password, "…")
            failed.append(f"node {node_id}: {said}")
    if failed:
        raise BrokerError("formatting failed: " + "\n".join(failed))


def _argfile(*args: str) -> str:
    """A Java launcher argument file of `args`: what it reads is on no command line, which any
    local user can read in /proc (the admin's password is among them)."""
    return "\n".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args) + "\n"


def _check_ports(node: Node) -> None:
    for port in (node.client_port, node.controller_port):
        if not 0 < port < 65536:
            raise BrokerError(f"node {node.node_id} would be on port {port}, not a TCP port: "
                              "choose lower ports with --port/--controller-port")
        if not _port_free(port):
            raise BrokerError(
                f"port {port} on {HOST} is taken by another program: "
                "stop it or choose other ports with --port/--controller-port"
            )


def _start(cl: Cluster, node: Node, java_bin: str, tethered: bool = False,
           fresh: bool = False, archive_to: Path | None = None) -> int:
    """Start a node; its output into its stdout.log, begun afresh if `fresh` (a run's start,
    `up`: the run before's kept as stdout.log.1), else gone on with (a node started again within
    a run, `start_node`: what it said before it stopped kept); from Kafka's classes archived
    (class_archive), or archiving them `archive_to` as it exits."""
    _check_ports(node)
    jvm = (*SERVER_JVM, *(class_archive.options(java_bin) if archive_to is None
                          else class_archive.making(archive_to)))
    files = _write_configs(cl, node)
    (begun if fresh else gone_on)(files["stdout"])
    with files["stdout"].open("ab") as log:
        popen = partial(
            subprocess.Popen,
            [*(TETHER if tethered else []),
             *_java_command(java_bin, jvm, files["log4j2"], "kafka.Kafka",
                            str(files["properties"]))],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, umask=0o077,  # its logs (server.log) and data its user's alone
        )
        if tethered:
            proc = _TETHERING.submit(popen).result()
            _TETHERED.add((cl.cluster_id, node.node_id))
        else:
            proc = popen()
    files["pid"].write_text(str(proc.pid))
    deadline = time.monotonic() + 5
    while not _runs_jvm(proc.pid, java_bin) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc.pid


def _runs_jvm(pid: int, java_bin: str) -> bool:
    """Whether `pid` has become the broker's JVM: setpriv (tethered) and the java launcher
    exec what comes next, and while an exec is under way the command line reads empty, which
    `_alive` would take for a broker that has exited."""
    cmdline = _cmdline(pid)
    return cmdline.startswith(os.fsencode(java_bin) + b"\0") and b"kafka.Kafka" in cmdline


@dataclass(frozen=True)
class Quorum:
    """The KRaft metadata quorum as the running nodes last recorded it."""

    leader: int | None  # the active controller's node id; None during an election
    epoch: int


def quorum(cl: Cluster) -> Quorum:
    """The quorum's leader from the running nodes' `quorum-state` files (the highest epoch
    wins); a leader whose process is gone counts as none (the others are electing one)."""
    running = {n.node_id for n in cl.nodes if _pid(cl, n) is not None}
    best = Quorum(None, -1)
    for node in cl.nodes:
        if node.node_id not in running:
            continue
        path = _files(cl, node)["data"] / "__cluster_metadata-0" / "quorum-state"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if int(data["leaderEpoch"]) > best.epoch:
            leader = int(data["leaderId"])
            best = Quorum(leader if leader in running else None, int(data["leaderEpoch"]))
    return best


def _listening(node: Node) -> bool:
    try:
        with socket.create_connection((HOST, node.client_port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_ready(cl: Cluster, pids: dict[int, int], timeout: float) -> None:
    """Until every started node listens, the metadata lists all the cluster's brokers
    (registered and unfenced) and the metadata quorum has a leader."""
    from confluent_kafka.admin import AdminClient

    from broker.clients import KafkaAccess

    deadline = time.monotonic() + timeout
    access = KafkaAccess(cl.bootstrap, credentials.load(config.ADMIN))
    admin = AdminClient({**access.confluent(), "log_level": 0})
    started = [n for n in cl.nodes if n.node_id in pids]
    while time.monotonic() < deadline:
        for node in started:
            if not _alive(pids[node.node_id]):
                raise BrokerError(
                    f"broker node {node.node_id} exited during start-up; last log lines:\n"
                    + "\n".join(tail_log(cl, node, 15))
                )
        if not all(_listening(n) for n in started):
            time.sleep(0.2)
            continue
        try:
            meta = admin.list_topics(timeout=2)
        except Exception:  # the broker is still starting: keep polling until the deadline
            time.sleep(0.2)
            continue
        if len(meta.brokers) >= cl.size and quorum(cl).leader is not None:
            return
        time.sleep(0.2)
    raise BrokerError(f"the broker did not accept connections within {timeout:.0f}s")


def _kept_port(port: int | None, default: int) -> int:
    """The port asked for (None: `default`); 0 (any free one) refused, as `broker up` does."""
    if port == 0:
        raise BrokerError("port 0 (any free one) cannot be the broker's: its ports are kept for "
                          "its restarts; choose them with --port/--controller-port")
    return default if port is None else port


def up(client_port: int | None, controller_port: int | None, nodes: int = 1,
       timeout: float = 90.0, tethered: bool = False,
       archive_to: Path | None = None) -> tuple[Cluster, bool]:
    """Format (first time) and start the nodes; return (cluster, started now). `tethered`:
    for a run that owns its broker, the nodes it starts shut down once this process has ended,
    killed or not; `archive_to`: they archive Kafka's classes there as they exit
    (archive_classes)."""
    java_bin = java()
    try:
        cl = cluster_store.load()
    except cluster_store.NoCluster:
        cl = cluster_store.plan(
            _kept_port(client_port, cluster_store.DEFAULT_CLIENT_PORT),
            _kept_port(controller_port, cluster_store.DEFAULT_CONTROLLER_PORT),
            nodes,
        )
        for node in cl.nodes:
            _check_ports(node)
        try:
            _format(cl, java_bin)
        except BrokerError:
            for node in cl.nodes:
                shutil.rmtree(cl.node_dir(node), ignore_errors=True)
            raise
        cluster_store.save(cl)
    else:
        first = cl.nodes[0]
        asked = (_kept_port(client_port, first.client_port),
                 _kept_port(controller_port, first.controller_port))
        if cl.size != nodes or asked != (first.client_port, first.controller_port):
            raise BrokerError(
                f"this state folder holds a {cl.size}-node broker on ports "
                f"{first.client_port}/{first.controller_port}; use another RENKEI_STATE "
                "for a different layout"
            )
    states = [NodeStatus(node, _pid(cl, node)) for node in cl.nodes]
    if all(s.running for s in states):
        return cl, False
    pids = {s.node.node_id: s.pid or _start(cl, s.node, java_bin, tethered, fresh=True,
                                            archive_to=archive_to)
            for s in states}
    _wait_ready(cl, pids, timeout)
    return cl, True


def node_of(cl: Cluster, node_id: int) -> Node:
    found = next((n for n in cl.nodes if n.node_id == node_id), None)
    if found is None:
        raise BrokerError(f"no node {node_id}: the cluster has nodes "
                          f"{', '.join(str(n.node_id) for n in cl.nodes)}")
    return found


def start_node(node_id: int, timeout: float = 90.0) -> bool:
    """Start one stopped node of the cluster (after a crash or `stop_node`) and wait until the
    cluster is whole again; False if it was running already. A node this process started
    tethered is started tethered again."""
    cl = cluster_store.load()
    node = node_of(cl, node_id)
    pids = {n.node_id: p for n in cl.nodes if (p := _pid(cl, n))}
    started = node_id not in pids
    if started:
        pids[node_id] = _start(cl, node, java(), (cl.cluster_id, node_id) in _TETHERED)
    _wait_ready(cl, pids, timeout)
    return started


def stop_node(node_id: int, hard: bool = False, timeout: float = 60.0) -> bool:
    """Stop one node: SIGTERM for a clean shutdown, or SIGKILL when `hard` (a crash)."""
    cl = cluster_store.load()
    node = node_of(cl, node_id)
    return _stop(cl, node, signal.SIGKILL if hard else signal.SIGTERM, timeout)


def _stop(cl: Cluster, node: Node, sig: signal.Signals, timeout: float) -> bool:
    return bool(_stop_all(cl, [node], sig, timeout))


def _stop_all(cl: Cluster, nodes: list[Node], sig: signal.Signals,
              timeout: float) -> list[int]:
    """Signal the running ones of `nodes` at once and wait until they are gone (SIGKILL after
    `timeout`); the ids of those stopped."""
    pids = {n.node_id: pid for n in nodes if (pid := _pid(cl, n)) is not None}
    for pid in pids.values():
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids.values()):
        if time.monotonic() > deadline:
            for pid in pids.values():
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.1)
    for node in nodes:
        if node.node_id in pids:
            _wait_closed(node)
            _files(cl, node)["pid"].unlink(missing_ok=True)
    return sorted(pids)


def _wait_closed(node: Node, within: float = 10.0) -> None:
    """Until nobody listens on the node's ports: a killed JVM's command line is gone a moment
    before its sockets are, and a restart must find them free."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not all(
            _port_free(port) for port in (node.client_port, node.controller_port)):
        time.sleep(0.05)


def down(timeout: float = 60.0) -> list[int]:
    """Stop every node cleanly (SIGTERM, then SIGKILL after `timeout`); return those stopped.

    All at once: a node stopped after a majority of the controllers would wait for a quorum
    that is gone (so with a minority left running, SIGKILL comes after 10s at most)."""
    cl = cluster_store.load()
    running = [n for n in cl.nodes if _pid(cl, n) is not None]
    if len(running) <= cl.size // 2:
        # no majority of controllers left to grant a controlled shutdown: it would only wait
        timeout = min(timeout, 10.0)
    return _stop_all(cl, running, signal.SIGTERM, timeout)


def archive_classes() -> Path | None:
    """Archive Kafka's classes for the broker's JVM (class_archive), once: a broker of a state
    folder of its own started and stopped cleanly, its JVM archiving what it loaded as it exits,
    the archive put in place whole once the JVM starts from it. Its path, made now; None: one
    made before that the JVM starts from (one it does not, cut short or stale, is made again)."""
    java_bin = java()
    archive = class_archive.path(java_bin)
    if archive.exists() and _starts_from(java_bin, archive):
        return None
    making = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    try:
        with tempfile.TemporaryDirectory(prefix="renkei-classes-") as folder, \
                state_folder(Path(folder)):
            try:
                up(*free_port_pair(), tethered=True, archive_to=making)
            finally:
                down()
        if not making.exists() or not _starts_from(java_bin, making):
            raise BrokerError(f"the broker's JVM ({java_bin}) archived no classes it can start "
                              "from")
        os.replace(making, archive)
    finally:
        making.unlink(missing_ok=True)
    return archive


def _starts_from(java_bin: str, archive: Path) -> bool:
    """Whether the JVM starts from `archive` with Kafka's classpath and a broker's heap and
    collector (-Xshare:on: it fails at once on an archive cut short, of another JVM build, heap
    layout or jars)."""
    checked = subprocess.run([java_bin, *SERVER_JVM, *class_archive.checking(archive), "-cp",
                              _classpath(), "-version"], capture_output=True, check=False)
    return checked.returncode == 0


def tail_log(cl: Cluster, node: Node, lines: int) -> list[str]:
    log = _files(cl, node)["logs"] / "server.log"
    if not log.exists():
        return []
    with log.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 200 * lines))
        return handle.read().decode("utf-8", "replace").splitlines()[-lines:]


STARTED = "Kafka Server started"  # a node's line once it serves, in each run of its log
SIGNALLED = "Terminating process due to signal"  # its first line of a stop on a signal
LEVEL = re.compile(r"^\[[^]]*\] (FATAL|ERROR) ")
WHY_BYTES = 256 * 1024  # of the end of a node's log looked through for why it stopped


def why_stopped(lines: list[str]) -> str | None:
    """Why a node whose log ends with `lines` stopped, as its log says since its last start:
    its last FATAL line, else its last ERROR line (each with the first line of the exception
    logged under it: "No space left on device"), unless a stop on a signal came after it (a
    clean stop: `renkei broker down`, `kill`); None if the log says nothing (a SIGKILL)."""
    since = max((k for k, line in enumerate(lines) if STARTED in line), default=-1) + 1
    run = lines[since:]
    levels = [(k, m[1]) for k, line in enumerate(run) if (m := LEVEL.match(line))]
    fatal = [k for k, level in levels if level == "FATAL"]
    errors = [k for k, level in levels if level == "ERROR"]
    signalled = [k for k, line in enumerate(run) if SIGNALLED in line]
    if fatal:
        return f"its log's last fatal line: {_with_cause(run, fatal[-1])}"
    if errors and not (signalled and signalled[-1] > errors[-1]):
        return f"its log's last error: {_with_cause(run, errors[-1])}"
    return f"stopped cleanly, on a signal: {run[signalled[-1]].strip()}" if signalled else None


def _with_cause(lines: list[str], at: int) -> str:
    """The log line at `at`, and the exception logged under it (its first line), if any."""
    said = lines[at].strip()
    following = lines[at + 1] if at + 1 < len(lines) else ""
    if following.strip() and not following.startswith(("[", "\t", " ")):
        said += f": {following.strip()}"
    return said


def stopped_why(cl: Cluster, node: Node) -> str | None:
    """Why a stopped node stopped, as the end of its server log says (why_stopped)."""
    log = _files(cl, node)["logs"] / "server.log"
    if not log.exists():
        return None
    with log.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - WHY_BYTES))
        return why_stopped(handle.read().decode("utf-8", "replace").splitlines())


def follow_log(cl: Cluster, node: Node) -> Iterator[str]:
    log = _files(cl, node)["logs"] / "server.log"
    with log.open("r", encoding="utf-8", errors="replace") as handle:
        handle.seek(0, os.SEEK_END)
        while True:
            line = handle.readline()
            if line:
                yield line.rstrip("\n")
            else:
                time.sleep(0.3)
