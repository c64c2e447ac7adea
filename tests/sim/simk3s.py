#!/usr/bin/env python3
"""SIMULATION of K3s (server/agent, kubectl, crictl, ctr) and of the helm CLI, for test hosts.

NOT PRODUCT CODE. Real K3s, charts, images and GPUs cannot be had on the machines that run
gpuhub's tests, so test hosts get this stand-in through the same airgap path users take
(`INSTALL_K3S_SKIP_DOWNLOAD=true` with the binary in /usr/local/bin/k3s). It imitates the
behaviour gpuhub depends on, keeping cluster state in a JSON file on the server host; see
tests/sim/README.md for what each part imitates and the upstream source of that behaviour.

One program, chosen by the name it is run as: k3s, kubectl, crictl, ctr, helm
(`k3s kubectl ...` works too, as with the real binary). Python 3.11 standard library + PyYAML.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import re
import secrets
import shlex
import signal
import socket
import sys
import tarfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import yaml

VERSION = "v0.0.0+k3s1"  # replaced by build_bundle.py with the version the bundle simulates
SIM_ETC = "/etc/gpuhub-sim"            # per-host simulation settings and fault switches
FAULTS = f"{SIM_ETC}/faults"
CONFIG = "/etc/rancher/k3s/config.yaml"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
DATA = "/var/lib/rancher/k3s"
SERVER_DIR = f"{DATA}/server"
DB = f"{SERVER_DIR}/sim-cluster.json"
CONTAINERD_DIR = f"{DATA}/agent/etc/containerd"
TOOLKIT_PATHS = ["/usr/local/nvidia/toolkit", "/usr/bin", "/usr/local/bin", "/usr/sbin"]
HEARTBEAT_S = 2
# K3s manifests/runtimes.yaml (release-1.34): node.k8s.io/v1 RuntimeClasses, name == handler.
RUNTIME_CLASSES = ("nvidia", "nvidia-experimental", "crun", "lunatic", "slight", "spin", "wws", "wasmedge",
                   "wasmer", "wasmtime")
STALE_S = 6


def fault(name: str):
    """The content of fault switch `name` ('' when set without a value), or None when unset."""
    try:
        with open(f"{FAULTS}/{name}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def die(message: str, code: int = 1):
    print(message, file=sys.stderr)
    sys.exit(code)


def log(message: str):
    print(time.strftime("%Y-%m-%dT%H:%M:%S ") + message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ versions

def version_tuple(v: str):
    m = re.match(r"v(\d+)\.(\d+)\.(\d+)", v)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def containerd2(v: str) -> bool:
    """containerd 2 (config v3) ships in K3s v1.31.6+, v1.32.2+ and later lines."""
    _, minor, patch = version_tuple(v)
    return minor >= 33 or (minor == 32 and patch >= 2) or (minor == 31 and patch >= 6)


# ------------------------------------------------------------------------------ config

def load_config(argv):
    """config.yaml (+ config.yaml.d/*.yaml) then CLI flags, as K3s merges them; `--config FILE`
    or K3S_CONFIG_FILE name another file."""
    config = {}
    path = os.environ.get("K3S_CONFIG_FILE") or CONFIG
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    drop_ins = f"{path}.d"
    files = [path] + sorted(f"{drop_ins}/{n}" for n in (os.listdir(drop_ins) if os.path.isdir(drop_ins) else []))
    for path in files:
        if os.path.exists(path):
            data = yaml.safe_load(open(path)) or {}
            if not isinstance(data, dict):
                die(f"level=fatal msg=\"failed to parse {path}: not a mapping\"")
            for key, value in data.items():
                if isinstance(value, list) and isinstance(config.get(key), list):
                    config[key] = config[key] + value
                else:
                    config[key] = value
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    value = argv[i + 1]
                    i += 1
                else:
                    value = True
            if key in ("node-label", "disable", "tls-san", "node-taint"):
                config.setdefault(key, []).append(value)
            else:
                config[key] = value
        i += 1
    return config


def node_name(config):
    return config.get("node-name") or os.environ.get("K3S_NODE_NAME") or socket.gethostname()


def host_address():
    """The first non-loopback IPv4 address (the test host's own)."""
    try:
        out = os.popen("ip -4 -o addr show scope global 2>/dev/null").read()
        m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
        if m:
            return m.group(1)
    except OSError:
        pass
    return "127.0.0.1"


def find_nvidia_runtime():
    """K3s looks for nvidia-container-runtime in /usr/local/nvidia/toolkit, then on PATH."""
    if fault("no-toolkit") is not None:
        return None
    for d in TOOLKIT_PATHS:
        path = f"{d}/nvidia-container-runtime"
        if os.access(path, os.X_OK):
            return path
    return None


# ------------------------------------------------------------------------------ containerd

def base_config_v3(nvidia_bin, default_runtime):
    lines = [
        "# File generated by k3s (SIMULATION). DO NOT EDIT. Use config-v3.toml.tmpl instead.",
        "version = 3",
        f'root = "{DATA}/agent/containerd"',
        'state = "/run/k3s/containerd"',
        "", "[grpc]", '  address = "/run/k3s/containerd/containerd.sock"',
        "", "[plugins.'io.containerd.internal.v1.opt']", f'  path = "{DATA}/agent/containerd"',
        "", "[plugins.'io.containerd.grpc.v1.cri']", '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "10010"',
        "", "[plugins.'io.containerd.cri.v1.runtime']", "  enable_selinux = false",
        "", "[plugins.'io.containerd.cri.v1.images']", '  snapshotter = "overlayfs"',
        "", "[plugins.'io.containerd.cri.v1.images'.pinned_images]", '  sandbox = "rancher/mirrored-pause:3.6"',
        "", "[plugins.'io.containerd.cri.v1.runtime'.cni]", f'  bin_dir = "{DATA}/data/cni"',
        f'  conf_dir = "{DATA}/agent/etc/cni/net.d"',
    ]
    if default_runtime:
        lines += ["", "[plugins.'io.containerd.cri.v1.runtime'.containerd]",
                  f'  default_runtime_name = "{default_runtime}"']
    lines += ["", "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
              '  runtime_type = "io.containerd.runc.v2"',
              "", "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
              "  SystemdCgroup = true",
              "", "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runhcs-wcow-process]",
              '  runtime_type = "io.containerd.runhcs.v1"']
    if nvidia_bin:
        lines += ["", "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']",
                  '  runtime_type = "io.containerd.runc.v2"',
                  "", "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'.options]",
                  f'  BinaryName = "{nvidia_bin}"', "  SystemdCgroup = true"]
    lines += ["", "[plugins.'io.containerd.cri.v1.images'.registry]",
              f'  config_path = "{CONTAINERD_DIR}/certs.d"', ""]
    return "\n".join(lines)


def base_config_v2(nvidia_bin, default_runtime):
    lines = ["# File generated by k3s (SIMULATION). DO NOT EDIT. Use config.toml.tmpl instead.",
             "version = 2", "", "[plugins.'io.containerd.grpc.v1.cri']", '  stream_server_address = "127.0.0.1"',
             "", "[plugins.'io.containerd.grpc.v1.cri'.containerd]", '  snapshotter = "overlayfs"']
    if default_runtime:
        lines.append(f'  default_runtime_name = "{default_runtime}"')
    lines += ["", "[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.runc]",
              '  runtime_type = "io.containerd.runc.v2"',
              "", "[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.runc.options]", "  SystemdCgroup = true"]
    if nvidia_bin:
        lines += ["", "[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.'nvidia']",
                  '  runtime_type = "io.containerd.runc.v2"',
                  "", "[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.'nvidia'.options]",
                  f'  BinaryName = "{nvidia_bin}"', "  SystemdCgroup = true"]
    return "\n".join(lines) + "\n"


_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


def go_template(text: str, fields: dict, base: str) -> str:
    """The subset of Go's text/template K3s users need: {{ template "base" . }}, {{ if [not] F }},
    {{ else }}, {{ end }}, {{ F }}, with {{- -}} trimming. An unknown field or action fails,
    as Go's would."""
    out, stack, pos, trim_next = [], [], 0, False

    def value(expr):
        if expr not in fields:
            raise ValueError(f"template: can't evaluate field {expr}")
        return fields[expr]

    for m in _ACTION.finditer(text):
        trim_before, action, trim_after = m.groups()
        chunk = text[pos:m.start()]
        chunk = chunk.lstrip() if trim_next else chunk
        chunk = chunk.rstrip() if trim_before else chunk
        if all(stack):
            out.append(chunk)
        trim_next, pos = bool(trim_after), m.end()
        if action == 'template "base" .':
            if all(stack):
                out.append(base)
        elif action.startswith("if "):
            cond = action[3:].strip()
            negate = cond.startswith("not ")
            stack.append(bool(value(cond[4:].strip() if negate else cond)) != negate)
        elif action in ("else", "end"):
            if not stack:
                raise ValueError(f"template: unexpected {{{{{action}}}}}")
            if action == "else":
                stack[-1] = not stack[-1]
            else:
                stack.pop()
        elif action.startswith("."):
            if all(stack):
                out.append(str(value(action)))
        else:
            raise ValueError(f"template: function or action not supported: {action!r}")
    if stack:
        raise ValueError("template: unexpected EOF (missing {{end}})")
    tail = text[pos:]
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)


class DefaultRuntimeNotFound(ValueError):
    pass


CONTAINERD_LOG = f"{DATA}/agent/containerd/containerd.log"


def containerd_log(level: str, message: str, **fields):
    """containerd logs to this file, not to K3s's journal (K3s release-1.34
    pkg/agent/config/config.go: nodeConfig.Containerd.Log = DataDir/agent/containerd/containerd.log)."""
    os.makedirs(os.path.dirname(CONTAINERD_LOG), exist_ok=True)
    def quoted(value):
        return json.dumps(value) if " " in str(value) or '"' in str(value) else value
    extra = " ".join(f"{k}={quoted(v)}" for k, v in fields.items())
    with open(CONTAINERD_LOG, "a") as out:
        out.write(f'time="{time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())}" level={level} '
                  f'msg={json.dumps(message)} {extra}\n')


def write_containerd_config(config):
    """Regenerate config.toml at every start, honouring templates. A template that does not
    render, or renders TOML containerd refuses, stops K3s from starting (as upstream)."""
    nvidia_bin = find_nvidia_runtime()
    default_runtime = config.get("default-runtime") or ""
    # K3s release-1.34 pkg/agent/containerd/config_linux.go SetupContainerdConfig: the default
    # runtime must be one it detected (only the extra runtimes it found, so not even runc):
    # "default runtime %s was not found"; startCRI's error then shuts K3s down (pkg/agent/run.go).
    detected = {"nvidia"} if nvidia_bin else set()
    if default_runtime and default_runtime not in detected:
        raise DefaultRuntimeNotFound(f"default runtime {default_runtime} was not found")
    v3 = containerd2(VERSION)
    base = (base_config_v3 if v3 else base_config_v2)(nvidia_bin, default_runtime)
    template = None
    for name in (["config-v3.toml.tmpl"] if v3 else []) + ["config.toml.tmpl"]:
        path = f"{CONTAINERD_DIR}/{name}"
        if os.path.exists(path):
            template = path
            break
    text = base
    if template:
        fields = {".NodeConfig.DefaultRuntime": default_runtime, ".SystemdCgroup": True,
                  ".NodeConfig.AgentConfig.Snapshotter": "overlayfs"}
        text = go_template(open(template).read(), fields, base)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"containerd: failed to load TOML from {CONTAINERD_DIR}/config.toml: {e}") from None
    os.makedirs(CONTAINERD_DIR, exist_ok=True)
    with open(f"{CONTAINERD_DIR}/config.toml", "w") as f:
        f.write(text)
    plugins = parsed.get("plugins", {})
    cri = plugins.get("io.containerd.cri.v1.runtime", plugins.get("io.containerd.grpc.v1.cri", {}))
    containerd = cri.get("containerd", {})
    runtimes = sorted(containerd.get("runtimes", {}))
    default = containerd.get("default_runtime_name", "runc")
    # K3s writes a template's output without checking it. containerd 2 (v2.1.5
    # internal/cri/config/config.go ValidateRuntimeConfig) refuses its CRI runtime plugin when
    # default_runtime_name names no configured runtime; the server logs "failed to load plugin"
    # (cmd/containerd/server/server.go) to containerd.log and runs on without CRI.
    cri_ok = default in runtimes
    if not cri_ok:
        error = ("invalid plugin config: no corresponding runtime configured in `containerd.runtimes` for "
                 f"`containerd` `default_runtime_name = \"{default}\"")
        containerd_log("warning", "failed to load plugin", error=error, id="io.containerd.cri.v1.runtime",
                       type="io.containerd.cri.v1")
        containerd_log("warning", "failed to load plugin", error=f"failed to get runtime service: {error}",
                       id="io.containerd.grpc.v1.cri", type="io.containerd.grpc.v1")
    return {"runtimes": runtimes, "default_runtime": default, "cri": cri_ok}


# ------------------------------------------------------------------------------ GPU facts

def gpu_facts():
    """What the device plugin would find on this node: GPUs through NVML (simulated nvidia-smi)."""
    import subprocess
    if fault("nvidia-smi-hangs") is not None:
        # Only the CLI hangs in this fault (tests/sim/README.md): the node keeps its heartbeat.
        count = int(open(f"{SIM_ETC}/gpus").read().strip() or 1)
        return {"gpus": count, "nvml": True, "model": "NVIDIA H100 80GB HBM3",
                "uuids": [f"GPU-sim-{i}" for i in range(count)]}
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=name,uuid", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"gpus": 0, "nvml": False, "model": "", "uuids": []}
    if result.returncode != 0:
        return {"gpus": 0, "nvml": False, "model": "", "uuids": []}
    rows = [line.split(", ") for line in result.stdout.splitlines() if line.strip()]
    return {"gpus": len(rows), "nvml": True, "model": rows[0][0] if rows else "", "uuids": [r[1] for r in rows]}


def node_report(config, role, containerd, started):
    labels = {}
    for item in config.get("node-label", []) or []:
        key, _, value = str(item).partition("=")
        labels[key] = value
    labels.update({"kubernetes.io/hostname": node_name(config), "kubernetes.io/os": "linux"})
    if role == "server":
        labels["node-role.kubernetes.io/control-plane"] = "true"
    return {"name": node_name(config), "role": role, "version": VERSION, "address": host_address(),
            "labels": labels, "containerd": containerd, "started": started,
            "faults": sorted(os.listdir(FAULTS)) if os.path.isdir(FAULTS) else [], **gpu_facts()}


# ------------------------------------------------------------------------------ cluster state

@contextlib.contextmanager
def cluster(write=False):
    """The server's state file, locked (kubectl, helm and the server share it). Like K3s's own
    datastore it is root's alone: K3s makes its server data dir 0700 (release-1.34
    pkg/daemons/control/server.go, os.MkdirAll(config.DataDir, 0700)); helm's release records,
    which hold the values given (the hub's OAuth secret), live there as cluster state."""
    make_server_dir()
    with open(DB + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        try:
            state = json.load(open(DB))
        except (FileNotFoundError, ValueError):
            state = {"nodes": {}, "runtimeclasses": {}, "namespaces": ["default", "kube-system"],
                     "releases": {}, "jobs": {}, "labels": {}, "pod_generations": {}}
        yield state
        if write:
            tmp = DB + ".tmp"
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump(state, f, indent=1, sort_keys=True)
            os.replace(tmp, DB)


def record_node(state, report):
    name = report["name"]
    previous = state["nodes"].get(name)
    node = dict(report, heartbeat=time.time())
    node["unhealthy_plugin"] = bool(previous and previous.get("unhealthy_plugin"))
    restarted = previous is not None and previous.get("started") != report["started"]
    if restarted and "plugin-unhealthy-after-restart" in report["faults"] and plugin_release(state):
        # NVIDIA/k8s-device-plugin#426: after a kubelet/K3s restart the plugin can mark every GPU
        # unhealthy; allocatable drops to 0 while capacity stays, until its pod is restarted.
        node["unhealthy_plugin"] = True
    state["nodes"][name] = node


# ------------------------------------------------------------------------------ server / agent

def sd_notify(message: str):
    """Type=notify, as the real units: systemctl start returns once K3s says READY=1."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(message.encode())


def token_value():
    with open(f"{SERVER_DIR}/token") as f:
        return f.read().strip()


def make_server_dir():
    os.makedirs(SERVER_DIR, mode=0o700, exist_ok=True)
    os.chmod(SERVER_DIR, 0o700)


def ensure_token(config):
    make_server_dir()
    path = f"{SERVER_DIR}/token"
    if not os.path.exists(path):
        secret = config.get("token") or secrets.token_hex(16)
        ca_hash = hashlib.sha256(secret.encode()).hexdigest()
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(f"K10{ca_hash}::server:{secret}\n")
    node_token = f"{SERVER_DIR}/node-token"
    if not os.path.exists(node_token):
        os.symlink("token", node_token)


def token_matches(given: str) -> bool:
    """Accept the full token or its secret part, as K3s does."""
    full = token_value()
    return bool(given) and given.strip() in (full, full.split("::server:")[-1])


class Api(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not token_matches(body.get("token", "")):
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"Unauthorized")
            return
        with cluster(write=True) as state:
            record_node(state, body["node"])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")


class HubProxy(http.server.BaseHTTPRequestHandler):
    """The JupyterHub release's proxy as users meet it: HTTPS on 443 with the certificate the
    test laid in /etc/gpuhub-sim/tls (standing in for Let's Encrypt), login -> GitHub."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        with cluster() as state:
            release = next((r for r in state["releases"].values() if r["chart"] == "jupyterhub"), None)
        if release is None:
            return self.reply(404, "no JupyterHub release")
        if fault("hub-never-ready") is not None:
            return self.reply(503, "Service Unavailable: the hub is not ready")
        github = ((release["values"].get("hub") or {}).get("config") or {}).get("GitHubOAuthenticator") or {}
        if self.path.startswith("/hub/oauth_login") and github:
            query = urllib.parse.urlencode({"client_id": github.get("client_id", ""), "response_type": "code",
                                            "redirect_uri": github.get("oauth_callback_url", "")})
            return self.reply(302, location=f"https://github.com/login/oauth/authorize?{query}")
        return self.reply(302, location="/hub/")

    def reply(self, code, text="", location=None):
        self.send_response(code)
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(text.encode())


def serve_hub_proxy():
    cert, key = f"{SIM_ETC}/tls/cert.pem", f"{SIM_ETC}/tls/key.pem"
    if not (os.path.exists(cert) and os.path.exists(key)):
        return
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 443), HubProxy)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def slow_start():
    delay = fault("slow-start")
    if delay is not None:
        time.sleep(float(delay or 10))


def start_containerd(config):
    """containerd as K3s runs it; how each failure looks to a person reading the journal."""
    try:
        containerd = write_containerd_config(config)
    except DefaultRuntimeNotFound as e:
        # K3s release-1.34 pkg/agent/run.go: startCRI's error -> signals.RequestShutdown, logged by
        # pkg/signals/signals.go as "Shutdown request received: %q"; the process ends before READY.
        die('level=error msg="Shutdown request received: '
            + json.dumps(f"failed to start container runtime: {e}")[1:-1] + '"')
    except ValueError as e:
        die(f'level=fatal msg="containerd exited: {e}"')
    if not containerd["cri"]:
        def waiting():
            # K3s release-1.34 pkg/agent/cri/cri.go WaitForService: retried every second, forever;
            # READY is sent all the same (pkg/agent/run.go notifies without waiting for the CRI).
            while True:
                time.sleep(1)
                log('level=info msg="Waiting for containerd startup: rpc error: code = Unimplemented desc = '
                    'unknown service runtime.v1.RuntimeService"')
        threading.Thread(target=waiting, daemon=True).start()
    return containerd


def run_server(argv):
    config = load_config(argv)
    if fault("k3s-fail-start") is not None:
        die('level=fatal msg="simulated failure: K3s could not start (fault k3s-fail-start)"')
    slow_start()
    containerd = start_containerd(config)
    ensure_token(config)
    started = time.time()
    mode = int(str(config.get("write-kubeconfig-mode", "0600")), 8)
    os.makedirs(os.path.dirname(KUBECONFIG), exist_ok=True)
    with open(KUBECONFIG, "w") as f:
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "default", "cluster": {
            "server": "https://127.0.0.1:6443"}}], "current-context": "default", "simulation": True}, f)
    os.chmod(KUBECONFIG, mode)
    with cluster(write=True) as state:
        # K3s >= v1.28.5 creates RuntimeClasses (k3s-io/k3s#8936): the static manifest
        # manifests/runtimes.yaml (release-1.34, same list in release-1.29), whatever runtimes the
        # node found, unless `disable: [runtimes]` (pkg/cli/cmds/stage.go DisableItems).
        if "runtimes" not in (config.get("disable") or []):
            for name in RUNTIME_CLASSES:
                state["runtimeclasses"][name] = {"handler": name}
        state["server"] = {"pid": os.getpid(), "started": started, "version": VERSION,
                           "disabled": sorted(config.get("disable", []) or [])}
        record_node(state, node_report(config, "server", containerd, started))
    bind = config.get("bind-address") or host_address()
    server = http.server.ThreadingHTTPServer((bind, 6443), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    serve_hub_proxy()
    log(f"k3s server (SIMULATION) {VERSION} listening on {bind}:6443")
    sd_notify("READY=1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(HEARTBEAT_S):
        with cluster(write=True) as state:
            record_node(state, node_report(config, "server", containerd, started))
            state["server"]["heartbeat"] = time.time()
    server.shutdown()
    with cluster(write=True) as state:
        state["server"]["pid"] = None


def read_token(config):
    """--token (flag or config) or K3S_TOKEN first; else --token-file or K3S_TOKEN_FILE."""
    token = config.get("token") or os.environ.get("K3S_TOKEN")
    if token:
        return str(token)
    path = config.get("token-file") or os.environ.get("K3S_TOKEN_FILE")
    if path:
        try:
            return open(path).read().strip()
        except OSError as e:
            die(f'level=fatal msg="failed to read token file {path}: {e.strerror}"')
    return ""


def post(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def run_agent(argv):
    config = load_config(argv)
    if fault("k3s-fail-start") is not None:
        die('level=fatal msg="simulated failure: K3s agent could not start (fault k3s-fail-start)"')
    server = config.get("server") or os.environ.get("K3S_URL")
    if not server:
        die('level=fatal msg="--server is required"')
    token = read_token(config)
    slow_start()
    containerd = start_containerd(config)
    # The sim's API is plain HTTP on the server's 6443 (real K3s: HTTPS with the token's CA hash).
    url = re.sub(r"^https://", "http://", server.rstrip("/")) + "/v1-sim/node"
    started = time.time()
    while True:
        # K3s release-1.34 pkg/agent/run.go createProxyAndValidateToken: forever, every 2 s, with
        # "Failed to validate connection to cluster at %s: %v"; with Type=notify and
        # TimeoutStartSec=0 (install.sh) `systemctl restart k3s-agent` does not return meanwhile.
        try:
            post(url, {"token": token, "node": node_report(config, "agent", containerd, started)})
            break
        except urllib.error.HTTPError as e:
            reason = f"{server.rstrip('/')}/cacerts: {e.code} {e.reason}"
        except OSError as e:
            reason = f"Get \"{server.rstrip('/')}/cacerts\": {e}"
        log(f'level=error msg="Failed to validate connection to cluster at {server}: {reason}"')
        time.sleep(2)
    log(f"k3s agent (SIMULATION) {VERSION} joined {server}")
    sd_notify("READY=1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(HEARTBEAT_S):
        with contextlib.suppress(OSError):
            post(url, {"token": token, "node": node_report(config, "agent", containerd, started)})


# ------------------------------------------------------------------------------ derived objects

def server_running(state) -> bool:
    s = state.get("server") or {}
    return bool(s.get("pid")) and time.time() - s.get("heartbeat", s.get("started", 0)) < STALE_S


def plugin_release(state):
    for release in state["releases"].values():
        if release["chart"] == "nvidia-device-plugin" and release["status"] == "deployed":
            return release
    return None


def plugin_on_node(state, node):
    """(runs: bool, reason, resource name, replicas) for the device plugin on `node`."""
    release = plugin_release(state)
    labels = effective_labels(state, node)
    if not release or labels.get("nvidia.com/gpu.present") != "true":
        return None
    values = release["values"]
    containerd = node["containerd"]
    if values.get("runtimeClassName") == "nvidia":
        runtime_ok = "nvidia" in state["runtimeclasses"] and "nvidia" in containerd["runtimes"]
    else:
        runtime_ok = containerd["default_runtime"] == "nvidia" and "nvidia" in containerd["runtimes"]
    gfd = bool((values.get("gfd") or {}).get("enabled"))
    if not runtime_ok or not node["nvml"]:
        # NVIDIA/k8s-device-plugin#477: under runc the plugin cannot load NVML.
        return {"running": False, "reason": "failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND", "gfd": gfd}
    configs = (values.get("config") or {}).get("map") or {}
    name = labels.get("nvidia.com/device-plugin.config") or (values.get("config") or {}).get("default")
    sharing = (yaml.safe_load(configs[name]) if name in configs else {}) or {}
    slicing = (sharing.get("sharing") or {}).get("timeSlicing") or {}
    replicas, rename = 1, None
    for resource in slicing.get("resources") or []:
        if resource.get("name") == "nvidia.com/gpu":
            replicas, rename = int(resource.get("replicas", 1)), resource.get("rename")
    shared = replicas > 1
    # device-plugin v0.20.0 api/config/v1/replicas.go: renameByDefault gives every shared resource
    # without its own `rename` the name NAME.shared (DefaultSharedResourceNameSuffix, consts.go).
    if shared and not rename and slicing.get("renameByDefault"):
        rename = "nvidia.com/gpu.shared"
    return {"running": True, "resource": rename if shared and rename else "nvidia.com/gpu", "replicas": replicas,
            "shared": shared, "renamed": bool(shared and rename), "gfd": gfd}


def effective_labels(state, node):
    labels = dict(node["labels"])
    labels.update(state["labels"].get(node["name"], {}))
    return {k: v for k, v in labels.items() if v is not None}


def node_object(state, node):
    labels = effective_labels(state, node)
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110"}
    allocatable = dict(capacity)
    plugin = plugin_on_node(state, node)
    if plugin and plugin["running"] and node["gpus"]:
        count = node["gpus"] * plugin["replicas"]
        capacity[plugin["resource"]] = str(count)
        allocatable[plugin["resource"]] = "0" if node.get("unhealthy_plugin") else str(count)
    if plugin and plugin["running"] and node["gpus"] and plugin["gfd"]:
        # GFD's labels (device-plugin v0.20.0 internal/lm/resource.go): keyed on nvidia.com/gpu
        # whatever the resource is called; the product gets "-SHARED" only when shared AND not
        # renamed (`if rl.isShared() && !rl.isRenamed()`).
        labels.update({"nvidia.com/gpu.count": str(node["gpus"]), "nvidia.com/gpu.replicas": str(plugin["replicas"]),
                       "nvidia.com/gpu.product": node["model"].replace(" ", "-")
                       + ("-SHARED" if plugin["shared"] and not plugin["renamed"] else ""),
                       "nvidia.com/gpu.sharing-strategy": "time-slicing" if plugin["shared"] else "none"})
    alive = time.time() - node["heartbeat"] < STALE_S and (node["role"] != "server" or server_running(state))
    cri = (node.get("containerd") or {}).get("cri", True)
    if not alive:
        condition = {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                     "message": "Kubelet stopped posting node status."}
    elif not cri:
        # kubernetes pkg/kubelet/runtime.go runtimeErrors: "container runtime is down"
        condition = {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                     "message": "container runtime is down"}
    else:
        condition = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status"}
    # core/v1 NodeCondition: when the kubelet last posted it (the node controller marks Unknown
    # without touching it); the kubelet posts its status as it starts.
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(node["heartbeat"]))
    condition.update(lastHeartbeatTime=stamp, lastTransitionTime=stamp)
    status = {"capacity": capacity, "allocatable": allocatable,
              "addresses": [{"type": "InternalIP", "address": node["address"]}],
              "conditions": [condition],
              "nodeInfo": {"kubeletVersion": node["version"], "containerRuntimeVersion": "containerd://2.0.5-k3s1"}}
    if alive and cri:
        # core/v1 NodeStatus.runtimeHandlers (kubernetes/api v0.34 core/v1/types.go), from the
        # CRI's runtime status: one per configured runtime, and "" for the default one.
        status["runtimeHandlers"] = [{"name": name, "features": {"recursiveReadOnlyMounts": True,
                                                                 "userNamespaces": False}}
                                     for name in [""] + list((node.get("containerd") or {}).get("runtimes", []))]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node["name"], "labels": labels},
            "status": status}


# ------------------------------------------------------------------------------ pods
#
# Pods are shaped as core/v1 Pods are (kubernetes/api v0.34.10 core/v1/types.go) and carry each
# reason where Kubernetes keeps it: the scheduler's in the PodScheduled condition (and a
# FailedScheduling event), the kubelet's in containerStatuses[].state (waiting: CrashLoopBackOff,
# ImagePullBackOff; terminated: exit code and reason), never in status.reason, which holds only
# pod-level reasons such as Evicted.

# k8s.io/apimachinery pkg/util/rand: the alphabet of the 5 characters generateName appends
# (names.SimpleNameGenerator). The simulation derives them from a hash, so names are stable.
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
STAMP = "2025-01-02T03:04:05Z"


def name_suffix(*parts) -> str:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return "".join(_NAME_CHARS[b % len(_NAME_CHARS)] for b in digest[:5])


def sim_uid(*parts) -> str:
    h = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def running():
    return {"running": {"startedAt": STAMP}}


def waiting(reason, message=""):
    return {"waiting": dict({"reason": reason}, **({"message": message} if message else {}))}


def terminated(code, reason):
    return {"terminated": {"exitCode": code, "reason": reason, "startedAt": STAMP, "finishedAt": STAMP}}


def container_status(name, image, state, last=None, restarts=0, ready=None):
    return {"name": name, "image": image, "imageID": "" if "waiting" in state else f"{image.split(':')[0]}@sha256:{'0' * 64}",
            "ready": bool("running" in state) if ready is None else ready, "restartCount": restarts,
            "started": "running" in state, "state": state, "lastState": last or {}}


def pod(name, namespace, labels, node, phase, spec=None, owner=None, init=(), containers=(), unschedulable=None,
        host_ip=""):
    """A core/v1 Pod. `init`/`containers`: container statuses (container_status); `unschedulable`:
    the scheduler's message for a pod it could not place (then no node, no container status)."""
    metadata = {"name": name, "namespace": namespace, "labels": labels, "uid": sim_uid(namespace, name),
                "creationTimestamp": STAMP}
    if owner:
        kind, owner_name = owner
        metadata["ownerReferences"] = [{"apiVersion": "batch/v1" if kind == "Job" else "apps/v1", "kind": kind,
                                        "name": owner_name, "uid": sim_uid(namespace, kind, owner_name),
                                        "controller": True, "blockOwnerDeletion": True}]
    spec = dict(spec or {})
    if unschedulable is not None:
        spec.pop("nodeName", None)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
                "status": {"phase": "Pending", "qosClass": "BestEffort",
                           "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                           "lastTransitionTime": STAMP, "reason": "Unschedulable",
                                           "message": unschedulable}]}}
    spec["nodeName"] = node
    unready = [c["name"] for c in containers if not c["ready"]]
    terminal = phase in ("Succeeded", "Failed")

    def condition(kind, ok, reason=None, message=None):
        c = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": STAMP}
        return dict(c, **({"reason": reason} if reason else {}), **({"message": message} if message else {}))
    if terminal:
        # kubelet GeneratePodReadyCondition: PodCompleted for Succeeded, PodFailed for Failed.
        why = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        ready = [condition("Ready", False, why), condition("ContainersReady", False, why)]
    elif unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        ready = [condition("Ready", False, "ContainersNotReady", message),
                 condition("ContainersReady", False, "ContainersNotReady", message)]
    else:
        ready = [condition("Ready", True), condition("ContainersReady", True)]
    status = {"phase": phase, "hostIP": host_ip, "startTime": STAMP, "qosClass": "BestEffort",
              "conditions": [condition("PodReadyToStartContainers", not terminal), condition("Initialized", True),
                             *ready, condition("PodScheduled", True)],
              "containerStatuses": list(containers)}
    if init:
        status["initContainerStatuses"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def plugin_daemonsets(release):
    """Chart nvidia-device-plugin 0.20.0 names: fullname is the release name when it contains
    the chart name, else RELEASE-nvidia-device-plugin (templates/_helpers.tpl); the plugin's
    DaemonSet is fullname (daemonset-device-plugin.yml), GFD's fullname-gpu-feature-discovery
    (daemonset-gfd.yml)."""
    name = release["name"]
    fullname = (name if "nvidia-device-plugin" in name else f"{name}-nvidia-device-plugin")[:63].rstrip("-")
    return fullname, f"{fullname}-gpu-feature-discovery"[:63].rstrip("-")


def daemonset_pod(state, release, daemonset, prefix, node, plugin):
    """One DaemonSet pod of the device-plugin chart on `node`. Both DaemonSets' pod templates carry
    only templateLabels (chart 0.20.0 _helpers.tpl): app.kubernetes.io/name and /instance, the same
    for the plugin and GFD; the DaemonSet adds controller-revision-hash and pod-template-generation.
    With a config map (config.map or config.name: hasConfigMap) each pod has PREFIX-init
    (config-manager, one shot) and PREFIX-sidecar beside PREFIX-ctr (daemonset-*.yml)."""
    ns, values = release["namespace"], release["values"]
    generation = state.setdefault("pod_generations", {}).get(f"{ns}/{daemonset}/{node['name']}", 0)
    name = f"{daemonset}-{name_suffix(daemonset, node['name'], generation)}"
    labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/instance": release["name"],
              "controller-revision-hash": name_suffix(daemonset, "revision")[:5] + "7d9", "pod-template-generation": "1"}
    image = f"nvcr.io/nvidia/k8s-device-plugin:v{release['version']}"
    config = values.get("config") or {}
    has_config_map = bool(config.get("map") or config.get("name"))
    main = f"{prefix}-ctr"
    if plugin["running"]:
        state_main = container_status(main, image, running())
    else:
        # The container exits at start (NVML cannot load; its log says so) and the kubelet backs off:
        # waiting CrashLoopBackOff, message "back-off %s restarting failed container=%s pod=%s"
        # (kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go), the exit in lastState.
        uid = sim_uid(ns, name)
        state_main = container_status(main, image, waiting(
            "CrashLoopBackOff", f"back-off 5m0s restarting failed container={main} pod={name}_{ns}({uid})"),
            last=terminated(1, "Error"), restarts=6)
    containers = ([container_status(f"{prefix}-sidecar", image, running())] if has_config_map else []) + [state_main]
    init = [container_status(f"{prefix}-init", image, terminated(0, "Completed"), ready=True)] if has_config_map else []
    spec = {"runtimeClassName": values["runtimeClassName"]} if values.get("runtimeClassName") else {}
    return pod(name, ns, labels, node["name"], "Running", spec=spec, owner=("DaemonSet", daemonset),
               init=init, containers=containers, host_ip=node["address"])


def release_pods(state):
    pods = []
    for release in state["releases"].values():
        ns = release["namespace"]
        if release["status"] != "deployed":
            continue
        if release["chart"] == "nvidia-device-plugin":
            plugin_ds, gfd_ds = plugin_daemonsets(release)
            for node in state["nodes"].values():
                plugin = plugin_on_node(state, node)
                if plugin is None:
                    continue
                pods.append(daemonset_pod(state, release, plugin_ds, "nvidia-device-plugin", node, plugin))
                if plugin["gfd"]:
                    pods.append(daemonset_pod(state, release, gfd_ds, "gpu-feature-discovery", node, plugin))
        elif release["chart"] == "jupyterhub":
            server = next((n for n in state["nodes"].values() if n["role"] == "server"), None)
            never = fault("hub-never-ready") is not None  # read where kubectl runs: the server
            for component in ("hub", "proxy"):
                labels = {"app": "jupyterhub", "component": component, "release": release["name"]}
                # hub-never-ready: the hub runs but its readiness probe fails (ready false, running).
                ready = not (never and component == "hub")
                status = container_status(component, f"quay.io/jupyterhub/k8s-{component}", running(), ready=ready)
                pods.append(pod(f"{component}-{release['revision']}", ns, labels, server["name"] if server else "",
                                "Running", containers=[status], host_ip=server["address"] if server else ""))
    return pods


SAMPLE = "/cuda-samples/sample"


def entrypoint(image):
    """The image's ENTRYPOINT: NVIDIA's cuda-sample images (NVIDIA/k8s-samples
    deployments/container/Dockerfile.ubuntu) run ENTRYPOINT ["/cuda-samples/sample"], a link to
    the sample they were built for (vectorAdd for the vectoradd-* tags)."""
    return [SAMPLE] if "/k8s/cuda-sample:" in image else ["sh"]


def run_container(container, runtime, visible, model):
    """(exit code, log) of one container, from its command as a shell would run it: only the
    programs GPU tests use are known. `runtime`: "nvidia" or "runc"; `visible`: the GPU uuids the
    NVIDIA runtime hands the container (NVIDIA_VISIBLE_DEVICES)."""
    argv = list(container.get("command") or entrypoint(container.get("image", ""))) + list(container.get("args") or [])
    if argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"]) and len(argv) > 2:
        return run_shell(argv[2], runtime, visible, model)
    code, out, err = run_program(argv, runtime, visible, model)
    return code, out + err


def run_shell(script, runtime, visible, model):
    """`a && b`, `a || b`, `a; b` (left to right, as sh), `exec`, `2>/dev/null`, `echo`."""
    parts = re.split(r"\s*(&&|\|\||;)\s*", script.strip())
    log, status, op = [], 0, ";"
    for i in range(0, len(parts), 2):
        if i:
            op = parts[i - 1]
        if (op == "&&" and status != 0) or (op == "||" and status == 0):
            continue
        words = [w for w in shlex.split(parts[i]) if w != "exec"]
        quiet = "2>/dev/null" in words
        words = [w for w in words if w != "2>/dev/null"]
        if words[:1] == ["echo"]:
            status, out, err = 0, " ".join(words[1:]) + "\n", ""
        else:
            status, out, err = run_program(words, runtime, visible, model)
        log.append(out + ("" if quiet else err))
    return status, "".join(log)


def run_program(argv, runtime, visible, model):
    """(exit code, stdout, stderr) of `argv` in the container."""
    program = argv[0] if argv else ""
    if program in ("nvidia-smi", "/usr/bin/nvidia-smi"):
        # The NVIDIA runtime mounts nvidia-smi into the container only when it hands it GPUs
        # (utility capability, which CUDA base images set); under runc, or with
        # NVIDIA_VISIBLE_DEVICES=void, there is none.
        if runtime != "nvidia" or not visible:
            return 127, "", f"sh: 1: {program}: not found\n"
        if argv[1:] == ["-L"]:
            return 0, "".join(f"GPU {i}: {model} (UUID: {uuid})\n" for i, uuid in enumerate(visible)), ""
        return 0, f"(SIMULATION) nvidia-smi {' '.join(argv[1:])}\n", ""
    if program in (SAMPLE, "/cuda-samples/vectorAdd"):
        # NVIDIA/cuda-samples Samples/0_Introduction/vectorAdd/vectorAdd.cu (the image builds
        # tag v11.6): its printf lines, "Test PASSED", "Done"; when cudaMalloc fails it prints
        # "Failed to allocate device vector A (error code %s)!" to stderr and exits EXIT_FAILURE.
        # The error string: no driver library in the container (runc) -> "CUDA driver version is
        # insufficient for CUDA runtime version"; no GPU handed over -> "no CUDA-capable device is
        # detected" (cudaGetErrorString, from knowledge of the CUDA runtime, not re-read).
        head = "[Vector addition of 50000 elements]\n"
        if runtime != "nvidia" or not visible:
            error = ("CUDA driver version is insufficient for CUDA runtime version" if runtime != "nvidia"
                     else "no CUDA-capable device is detected")
            return 1, head, f"Failed to allocate device vector A (error code {error})!\n"
        return 0, head + ("Copy input data from the host memory to the CUDA device\n"
                          "CUDA kernel launch with 196 blocks of 256 threads\n"
                          "Copy output data from the CUDA device to the host memory\n"
                          "Test PASSED\nDone\n"), ""
    return 127, "", f"sh: 1: {program}: not found\n"


def fit_error(counts: dict, preemption: dict, total: int) -> str:
    """The scheduler's message: kubernetes pkg/scheduler/framework/types.go FitError.Error,
    "0/%v nodes are available: " + the "%v %v" (count, reason) entries sorted and joined by ", ",
    then "."; then the DefaultPreemption PostFilter's message in the same form ("No preemption
    victims found for incoming pod" where evicting could help, "Preemption is not helpful for
    scheduling" where it cannot). The trailing periods differ between releases (field outputs
    show both "pod." and "pod.."); this is the one-period form."""
    if not total:
        return "no nodes available to schedule pods"

    def histogram(entries):
        return ", ".join(sorted(f"{n} {reason}" for reason, n in entries.items()))
    return (f"0/{total} nodes are available: {histogram(counts)}. "
            f"preemption: 0/{total} nodes are available: {histogram(preemption)}.")


def schedule(state, job):
    """Place the Job's pod as the scheduler and kubelet would; -> the pod's fate (a dict)."""
    name = job["metadata"]["name"]
    spec = job["spec"]["template"]["spec"]
    wanted = {}
    for container in spec.get("containers", []):
        for key, value in ((container.get("resources") or {}).get("limits") or {}).items():
            if key.startswith("nvidia.com/"):
                wanted[key] = wanted.get(key, 0) + int(value)
    selector = spec.get("nodeSelector") or {}
    runtime_class = spec.get("runtimeClassName")
    if runtime_class and runtime_class not in state["runtimeclasses"]:
        # The RuntimeClass admission plugin refuses the pod, so none exists; the Job controller
        # records it on the Job: event FailedCreate "Error creating: pods \"NAME-\" is forbidden:
        # pod rejected: RuntimeClass \"X\" not found" (kubernetes plugin/pkg/admission/runtimeclass,
        # pkg/controller/job; from knowledge, not re-read).
        return {"fate": "no-pod", "message": f'Error creating: pods "{name}-" is forbidden: '
                                             f'pod rejected: RuntimeClass "{runtime_class}" not found'}
    nodes = [node_object(state, n) for n in state["nodes"].values()]
    fits, counts, preemption = [], {}, {}

    def refuse(reason, helps):
        counts[reason] = counts.get(reason, 0) + 1
        key = "No preemption victims found for incoming pod" if helps else "Preemption is not helpful for scheduling"
        preemption[key] = preemption.get(key, 0) + 1
    for node in nodes:
        labels = node["metadata"]["labels"]
        ready = node["status"]["conditions"][0]["status"]
        if any(labels.get(k) != v for k, v in selector.items()):
            refuse("node(s) didn't match Pod's node affinity/selector", False)
        elif ready != "True":
            # The node lifecycle controller taints a node whose status is Unknown `unreachable`,
            # one that is not Ready `not-ready` (NoSchedule); the scheduler names the taint.
            taint = "node.kubernetes.io/unreachable" if ready == "Unknown" else "node.kubernetes.io/not-ready"
            refuse(f"node(s) had untolerated taint {{{taint}: }}", False)
        elif any(int(node["status"]["allocatable"].get(k, "0")) < v for k, v in wanted.items()):
            for k, v in wanted.items():
                if int(node["status"]["allocatable"].get(k, "0")) < v:
                    counts[f"Insufficient {k}"] = counts.get(f"Insufficient {k}", 0) + 1
            key = "No preemption victims found for incoming pod"
            preemption[key] = preemption.get(key, 0) + 1
        else:
            fits.append(node)
    if not fits:
        return {"fate": "unschedulable", "message": fit_error(counts, preemption, len(nodes))}
    node = fits[0]
    raw = state["nodes"][node["metadata"]["name"]]
    if "image-pull-fails" in raw.get("faults", []):
        image = spec["containers"][0].get("image", "")
        # The kubelet's back-off after a failed pull (kubernetes pkg/kubelet/images/image_manager.go:
        # "Back-off pulling image %q" + ": " + the previous pull error; containerd's resolver says
        # "REF: not found" for a tag the registry does not have).
        return {"fate": "waiting", "node": raw["name"], "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}": ErrImagePull: rpc error: code = NotFound desc = '
                           f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                           f'{image}: not found'}
    uses_nvidia = (runtime_class == "nvidia") or raw["containerd"]["default_runtime"] == "nvidia"
    runtime = "nvidia" if uses_nvidia and "nvidia" in raw["containerd"]["runtimes"] else "runc"
    # What the container sees (NVIDIA container runtime): the allocated GPU when it asked for one;
    # none under runc or with NVIDIA_VISIBLE_DEVICES=void; ALL of them under the nvidia runtime
    # when it asked for none and the image says "all" (NVIDIA/k8s-device-plugin#87, #1596).
    env = {e.get("name"): e.get("value") for c in spec.get("containers", []) for e in c.get("env") or []}
    uuids = raw.get("uuids", [])
    if runtime != "nvidia" or env.get("NVIDIA_VISIBLE_DEVICES") == "void":
        visible = []
    else:
        visible = uuids[:1] if wanted else uuids
    code, logs = run_container(spec["containers"][0], runtime, visible, raw["model"])
    return {"fate": "Succeeded" if code == 0 else "Failed", "node": raw["name"], "exit": code, "logs": logs}


def job_phase(job) -> str:
    fate = job["placement"]["fate"]
    return fate if fate in ("Succeeded", "Failed") else "Pending"


def job_pods(state):
    pods = []
    for key, job in state["jobs"].items():
        ns, name = key.split("/", 1)
        fate = job["placement"]
        if fate["fate"] == "no-pod":
            continue
        # The Job controller labels its pods job-name and batch.kubernetes.io/job-name (and the
        # controller-uid pair); names are generateName NAME- + 5 characters.
        uid = sim_uid(ns, "Job", name)
        labels = dict((job["spec"]["template"].get("metadata") or {}).get("labels") or {},
                      **{"job-name": name, "batch.kubernetes.io/job-name": name,
                         "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid})
        spec = job["spec"]["template"]["spec"]
        container = spec["containers"][0]
        image = container.get("image", "")
        pod_name = f"{name}-{name_suffix(ns, name)}"
        host_ip = state["nodes"].get(fate.get("node") or "", {}).get("address", "")
        if fate["fate"] == "unschedulable":
            p = pod(pod_name, ns, labels, None, "Pending", spec=spec, owner=("Job", name), unschedulable=fate["message"])
        elif fate["fate"] == "waiting":
            p = pod(pod_name, ns, labels, fate["node"], "Pending", spec=spec, owner=("Job", name), host_ip=host_ip,
                    containers=[container_status(container["name"], image, waiting(fate["reason"], fate["message"]))])
        else:
            code = fate["exit"]
            p = pod(pod_name, ns, labels, fate["node"], fate["fate"], spec=spec, owner=("Job", name), host_ip=host_ip,
                    containers=[container_status(container["name"], image,
                                                 terminated(code, "Completed" if code == 0 else "Error"))])
        p["sim_logs"] = fate.get("logs", "")
        pods.append(p)
    return pods


def refresh_jobs(state):
    """The scheduler retries Pending pods; a pod that ran keeps its result."""
    for job in state["jobs"].values():
        if job["placement"]["fate"] in ("unschedulable", "waiting", "no-pod"):
            job["placement"] = schedule(state, job)


# ------------------------------------------------------------------------------ kubectl

def parse_flags(argv, with_value=("-n", "--namespace", "-o", "--output", "-l", "--selector", "-f", "--filename",
                                  "--for", "--timeout", "--field-selector", "--kubeconfig", "--type")):
    args, flags = [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and "=" in a and a.split("=", 1)[0] in with_value:
            key, value = a.split("=", 1)
            flags[key] = value
        elif a in with_value:
            flags[a] = argv[i + 1] if i + 1 < len(argv) else ""
            i += 1
        elif a.startswith("-"):
            flags[a] = True
        else:
            args.append(a)
        i += 1
    aliases = {"--namespace": "-n", "--output": "-o", "--selector": "-l", "--filename": "-f", "--all-namespaces": "-A"}
    return args, {aliases.get(k, k): v for k, v in flags.items()}


def require_cluster(flags):
    kubeconfig = flags.get("--kubeconfig") or os.environ.get("KUBECONFIG") or KUBECONFIG
    if not os.access(kubeconfig, os.R_OK):
        die(f"error: error loading config file \"{kubeconfig}\": open {kubeconfig}: permission denied or missing")
    with cluster() as state:
        if not server_running(state):
            die("The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?")


def matches(labels, selector):
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def output(items, flags, kind="List", single=False):
    fmt = flags.get("-o", "")
    # kubectl prints a list of any kind as a v1 List (kubectl get -o json|yaml).
    listed = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
    if fmt == "json":
        print(json.dumps(items[0] if single else listed, indent=2))
    elif fmt == "yaml":
        print(yaml.safe_dump(items[0] if single else listed))
    elif fmt == "name":
        # k8s.io/cli-runtime pkg/printers/name.go: "kind/name" for the core group, else
        # "kind.group/name" (lowercased kind): runtimeclass.node.k8s.io/nvidia, job.batch/x.
        for item in items:
            group = item.get("apiVersion", "v1").rpartition("/")[0]
            print(f"{item['kind'].lower()}{'.' + group if group else ''}/{item['metadata']['name']}")
    else:
        for item in items:
            status = item.get("status", {})
            extra = status.get("phase") or next((c["status"] for c in status.get("conditions", [])), "")
            print(f"{item['metadata'].get('namespace', '')}\t{item['metadata']['name']}\t{extra}".lstrip("\t"))


def kubectl(argv):
    args, flags = parse_flags(argv)
    if not args:
        die("kubectl (SIMULATION): give a command")
    verb, rest = args[0], args[1:]
    if verb == "version":
        print(json.dumps({"clientVersion": {"gitVersion": VERSION}}) if flags.get("-o") == "json" else f"Client Version: {VERSION}")
        return
    require_cluster(flags)
    ns = flags.get("-n", "default")
    write = verb in ("apply", "create", "delete", "label", "rollout")
    with cluster(write=write) as state:
        refresh_jobs(state)
        if verb == "get":
            kubectl_get(state, rest, flags, ns)
        elif verb in ("apply", "create"):
            kubectl_apply(state, flags, ns)
        elif verb == "delete":
            kubectl_delete(state, rest, flags, ns)
        elif verb == "label":
            kubectl_label(state, rest, flags)
        elif verb == "logs":
            kubectl_logs(state, rest, flags, ns)
        elif verb == "rollout":
            if rest[:1] == ["restart"] and len(rest) > 1:
                kind, _, daemonset = rest[1].partition("/")
                if kind not in ("daemonset", "ds", "daemonset.apps"):
                    die(f"kubectl (SIMULATION): rollout restart {rest[1]} not simulated")
                for node in state["nodes"].values():
                    restart_pod(state, ns, daemonset, node["name"])
                print(f"daemonset.apps/{daemonset} restarted")
            else:
                die(f"kubectl (SIMULATION): rollout {' '.join(rest)} not simulated")
        elif verb == "wait":
            pass
        else:
            die(f"kubectl (SIMULATION): {verb} not simulated")
    if verb == "wait":
        kubectl_wait(rest, flags, ns)


def objects(state, kind, ns, flags):
    everywhere = "-A" in flags
    if kind in ("node", "nodes", "no"):
        return [node_object(state, n) for n in sorted(state["nodes"].values(), key=lambda n: n["name"])], "Node"
    if kind in ("pod", "pods", "po"):
        pods = release_pods(state) + job_pods(state)
        return [p for p in pods if everywhere or p["metadata"]["namespace"] == ns], "Pod"
    if kind in ("job", "jobs"):
        items = []
        for key, job in state["jobs"].items():
            jns, name = key.split("/", 1)
            if everywhere or jns == ns:
                phase = job_phase(job)
                status = {"succeeded": 1} if phase == "Succeeded" else {"failed": 1} if phase == "Failed" else {"active": 1}
                # batch/v1 JobStatus; with backoffLimit 0 one failed pod ends the Job:
                # reason BackoffLimitExceeded (kubernetes pkg/controller/job/job_controller.go).
                conditions = ([{"type": "Complete", "status": "True"}] if phase == "Succeeded" else
                              [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                "message": "Job has reached the specified backoff limit"}] if phase == "Failed" else [])
                shown = {k: v for k, v in job.items() if k != "placement"}
                items.append(dict(shown, status=dict(status, conditions=conditions)))
        return items, "Job"
    if kind in ("runtimeclass", "runtimeclasses"):
        return [{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": n}, "handler": rc["handler"]}
                for n, rc in sorted(state["runtimeclasses"].items())], "RuntimeClass"
    if kind in ("namespace", "namespaces", "ns"):
        return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in state["namespaces"]], "Namespace"
    if kind in ("event", "events", "ev"):
        # core/v1 Events as `kubectl get events -o json` shows them (kubernetes/api v0.34.10
        # core/v1/types.go Event). The scheduler's FailedScheduling (events.k8s.io recorder: eventTime
        # set, no first/lastTimestamp) carries the PodScheduled condition's message; the Job
        # controller's FailedCreate is about the Job when the API refused its pod.
        events = []
        for p in job_pods(state):
            scheduled = next((c for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"), {})
            if scheduled.get("status") == "False" and (everywhere or p["metadata"]["namespace"] == ns):
                events.append(event(p["metadata"]["namespace"], "Pod", p["metadata"]["name"], "FailedScheduling",
                                    scheduled["message"], "default-scheduler", action="Scheduling"))
        for key, job in state["jobs"].items():
            jns, name = key.split("/", 1)
            if job["placement"]["fate"] == "no-pod" and (everywhere or jns == ns):
                events.append(event(jns, "Job", name, "FailedCreate", job["placement"]["message"], "job-controller"))
        return events, "Event"
    die(f'error: the server doesn\'t have a resource type "{kind}"')


def event(ns, kind, name, reason, message, component, action=None):
    item = {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": reason, "message": message,
            "metadata": {"name": f"{name}.{name_suffix(ns, name, reason)}", "namespace": ns},
            "involvedObject": {"apiVersion": "batch/v1" if kind == "Job" else "v1", "kind": kind, "namespace": ns,
                               "name": name, "uid": sim_uid(ns, kind, name) if kind == "Job" else sim_uid(ns, name)},
            "source": {} if action else {"component": component}, "reportingComponent": component,
            "reportingInstance": "", "count": None if action else 1}
    if action:
        item.update(action=action, eventTime="2025-01-02T03:04:05.000000Z", firstTimestamp=None, lastTimestamp=None)
    else:
        item.update(firstTimestamp=STAMP, lastTimestamp=STAMP)
    return item


def kubectl_get(state, rest, flags, ns):
    if not rest:
        die("error: You must specify the type of resource to get.")
    kind, _, name = rest[0].partition("/")
    if not name and len(rest) > 1:
        name = rest[1]
    items, list_kind = objects(state, kind, ns, flags)
    items = [i for i in items if matches(i["metadata"].get("labels", {}), flags.get("-l"))]
    field = flags.get("--field-selector", "")
    if field.startswith("involvedObject.name="):
        items = [i for i in items if i["involvedObject"]["name"] == field.split("=", 1)[1]]
    if name:
        items = [i for i in items if i["metadata"]["name"] == name]
        if not items:
            plural = {"Node": "nodes", "Pod": "pods", "Job": "jobs.batch", "RuntimeClass": "runtimeclasses.node.k8s.io",
                      "Namespace": "namespaces"}.get(list_kind, list_kind.lower())
            die(f'Error from server (NotFound): {plural} "{name}" not found')
        output(items, flags, single=True)
    else:
        output(items, flags, kind=list_kind)


def kubectl_apply(state, flags, ns):
    source = flags.get("-f")
    text = sys.stdin.read() if source in ("-", None) else open(source).read()
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        kind, name = doc.get("kind"), doc["metadata"]["name"]
        dns = doc["metadata"].get("namespace") or ns
        if kind == "Namespace":
            if name not in state["namespaces"]:
                state["namespaces"].append(name)
            print(f"namespace/{name} created")
        elif kind == "Job":
            key = f"{dns}/{name}"
            if key in state["jobs"]:
                die(f'The Job "{name}" is invalid: spec.template: field is immutable')
            job = dict(doc)
            job["metadata"] = dict(doc["metadata"], namespace=dns)
            job["placement"] = schedule(state, job)
            state["jobs"][key] = job
            print(f"job.batch/{name} created")
        else:
            die(f"kubectl (SIMULATION): apply of kind {kind} is not simulated")


def kubectl_delete(state, rest, flags, ns):
    kind, _, name = (rest[0] if rest else "").partition("/")
    if not name and len(rest) > 1:
        name = rest[1]
    if kind in ("job", "jobs"):
        if state["jobs"].pop(f"{ns}/{name}", None) is None and "--ignore-not-found" not in flags:
            die(f'Error from server (NotFound): jobs.batch "{name}" not found')
        print(f'job.batch "{name}" deleted')
    elif kind in ("pod", "pods", "po"):
        deleted = [p for p in release_pods(state) + job_pods(state)
                   if p["metadata"]["namespace"] == ns and (p["metadata"]["name"] == name if name else matches(p["metadata"]["labels"], flags.get("-l")))]
        for p in deleted:
            owner = (p["metadata"].get("ownerReferences") or [{}])[0]
            if owner.get("kind") == "DaemonSet":
                restart_pod(state, ns, owner["name"], p["spec"]["nodeName"])
            print(f'pod "{p["metadata"]["name"]}" deleted')
        if not deleted and "--ignore-not-found" not in flags:
            die(f'Error from server (NotFound): pods "{name}" not found')
    else:
        die(f"kubectl (SIMULATION): delete {kind} not simulated")


def restart_pod(state, ns, daemonset, node_name):
    """The DaemonSet replaces its pod on the node: a new pod, a new name. Only the device plugin's
    own new pod sees the GPUs healthy again (the #426 heal); GFD's, with the same labels, does not."""
    key = f"{ns}/{daemonset}/{node_name}"
    generations = state.setdefault("pod_generations", {})
    generations[key] = generations.get(key, 0) + 1
    release = plugin_release(state)
    node = state["nodes"].get(node_name)
    if release and node and release["namespace"] == ns and daemonset == plugin_daemonsets(release)[0]:
        node["unhealthy_plugin"] = False


def kubectl_label(state, rest, flags):
    if len(rest) < 2 or rest[0].split("/")[0] not in ("node", "nodes", "no"):
        die("kubectl (SIMULATION): only `label node NAME k=v` is simulated")
    target = rest[0].split("/", 1)[1] if "/" in rest[0] else rest[1]
    pairs = rest[1:] if "/" in rest[0] else rest[2:]
    if target not in state["nodes"]:
        die(f'Error from server (NotFound): nodes "{target}" not found')
    current = effective_labels(state, state["nodes"][target])
    overrides = state["labels"].setdefault(target, {})
    for pair in pairs:
        if pair.endswith("-"):
            overrides[pair[:-1]] = None
            continue
        key, _, value = pair.partition("=")
        if key in current and current[key] != value and "--overwrite" not in flags:
            die(f"error: '{key}' already has a value ({current[key]}), and --overwrite is false")
        overrides[key] = value
    print(f"node/{target} labeled")


def kubectl_logs(state, rest, flags, ns):
    target = rest[0] if rest else ""
    kind, _, name = target.partition("/")
    name = name or kind
    for p in job_pods(state):
        if p["metadata"]["namespace"] == ns and (p["metadata"]["labels"].get("job-name") == name or p["metadata"]["name"] == name):
            if p["status"]["phase"] == "Pending":
                # kubelet pkg/kubelet/kubelet_pods.go validateContainerLogStatus (from knowledge).
                statuses = p["status"].get("containerStatuses") or [{}]
                reason = ((statuses[0].get("state") or {}).get("waiting") or {}).get("reason", "ContainerCreating")
                reason = "trying and failing to pull image" if reason in ("ErrImagePull", "ImagePullBackOff") else reason
                container = p["spec"]["containers"][0]["name"]
                die(f'Error from server (BadRequest): container "{container}" in pod "{p["metadata"]["name"]}" '
                    f'is waiting to start: {reason}')
            sys.stdout.write(p["sim_logs"])
            return
    die(f'Error from server (NotFound): pods "{name}" not found')


def kubectl_wait(rest, flags, ns):
    condition = str(flags.get("--for", "")).split("=", 1)[-1].lower()
    timeout = float(re.sub(r"s$", "", str(flags.get("--timeout", "30s"))) or 30)
    target = rest[0] if rest else ""
    kind, _, name = target.partition("/")
    deadline = time.time() + timeout
    while True:
        with cluster(write=True) as state:
            refresh_jobs(state)
            items, _ = objects(state, kind, ns, flags)
            items = [i for i in items if (not name or i["metadata"]["name"] == name) and matches(i["metadata"].get("labels", {}), flags.get("-l"))]
        if not items:
            die(f'Error from server (NotFound): {kind} "{name}" not found')

        def met(item):
            conditions = item.get("status", {}).get("conditions", [])
            return any(c["type"].lower() == condition and c["status"] == "True" for c in conditions)
        if all(met(i) for i in items):
            for i in items:
                print(f"{kind}/{i['metadata']['name']} condition met")
            return
        if time.time() > deadline:
            die(f"error: timed out waiting for the condition on {target}")
        time.sleep(0.5)


# ------------------------------------------------------------------------------ helm

def chart_from(ref, repo, version):
    """(name, version) from a local chart archive (airgap) or `repo/chart` / --repo chart."""
    if os.path.isfile(ref):
        with tarfile.open(ref) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/Chart.yaml") and m.name.count("/") == 1)
            chart = yaml.safe_load(archive.extractfile(member))
        if version and chart["version"] != version:
            die(f"Error: chart {ref} is version {chart['version']}, not {version}")
        return chart["name"], chart["version"]
    if not repo and "/" not in ref:
        die(f'Error: repo {ref} not found')
    if not version:
        die("Error: (SIMULATION) give --version: the simulated repositories serve pinned charts only")
    return ref.split("/")[-1], version


def helm(argv):
    args, flags = parse_flags(argv, with_value=("-n", "--namespace", "-o", "--output", "-f", "--values", "--version",
                                                 "--repo", "--timeout", "--kubeconfig"))
    if not args:
        die("helm (SIMULATION): give a command")
    verb = args[0]
    if verb == "version":
        print('version.BuildInfo{Version:"v3.17.3-sim"}')
        return
    if fault("helm-fail") is not None:
        die("Error: (SIMULATION) helm failed (fault helm-fail)")
    require_cluster(flags)
    ns = flags.get("-n", "default")
    with cluster(write=verb in ("upgrade", "install", "uninstall")) as state:
        key = f"{ns}/{args[1]}" if len(args) > 1 else ""
        if verb in ("upgrade", "install"):
            if len(args) < 3:
                die("Error: \"helm upgrade\" requires 2 arguments")
            previous = state["releases"].get(key)
            if verb == "upgrade" and previous is None and "--install" not in flags and "-i" not in flags:
                die(f'Error: UPGRADE FAILED: "{args[1]}" has no deployed releases')
            if ns not in state["namespaces"]:
                if "--create-namespace" not in flags:
                    die(f'Error: create: failed to create: namespaces "{ns}" not found')
                state["namespaces"].append(ns)
            name, version = chart_from(args[2], flags.get("--repo"), flags.get("--version"))
            values = {}
            source = flags.get("-f") or flags.get("--values")
            if source:
                values = yaml.safe_load(sys.stdin.read() if source == "-" else open(source).read()) or {}
            revision = previous["revision"] + 1 if previous else 1
            state["releases"][key] = {"name": args[1], "namespace": ns, "chart": name, "version": version,
                                      "values": values, "revision": revision, "status": "deployed",
                                      "updated": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime())}
            print(f'Release "{args[1]}" has been {"upgraded" if previous else "installed"}. Happy Helming!')
            print(f"NAME: {args[1]}\nNAMESPACE: {ns}\nSTATUS: deployed\nREVISION: {revision}")
        elif verb in ("list", "ls"):
            everywhere = "-A" in flags or "--all-namespaces" in flags
            rows = [{"name": r["name"], "namespace": r["namespace"], "revision": str(r["revision"]), "updated": r["updated"],
                     "status": r["status"], "chart": f"{r['chart']}-{r['version']}", "app_version": ""}
                    for r in state["releases"].values() if everywhere or r["namespace"] == ns]
            if flags.get("-o") == "json":
                print(json.dumps(rows))
            else:
                for r in rows:
                    print(f"{r['name']}\t{r['namespace']}\t{r['revision']}\t{r['status']}\t{r['chart']}")
        elif verb == "get" and len(args) >= 3 and args[1] == "values":
            release = state["releases"].get(f"{ns}/{args[2]}")
            if not release:
                die("Error: release: not found")
            print(json.dumps(release["values"]) if flags.get("-o") == "json" else yaml.safe_dump(release["values"]))
        elif verb == "status":
            release = state["releases"].get(key)
            if not release:
                die("Error: release: not found")
            info = {"name": release["name"], "namespace": ns, "version": release["revision"],
                    "info": {"status": release["status"]}, "chart": {"metadata": {"name": release["chart"], "version": release["version"]}}}
            print(json.dumps(info) if flags.get("-o") == "json" else f"NAME: {release['name']}\nSTATUS: {release['status']}")
        elif verb in ("uninstall", "delete"):
            if state["releases"].pop(key, None) is None:
                die(f"Error: uninstall: Release not loaded: {args[1]}: release: not found")
            print(f'release "{args[1]}" uninstalled')
        else:
            die(f"helm (SIMULATION): {verb} not simulated")


# ------------------------------------------------------------------------------ entry

ARGV_LOG = "/var/log/gpuhub-sim/argv.log"


def record_argv(argv):
    """Not an imitation: a recording for the tests, which check that no secret is ever in a
    command line (sampling /proc would miss short-lived processes)."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(ARGV_LOG), exist_ok=True)
        with open(ARGV_LOG, "a") as out:
            out.write(json.dumps({"argv": argv, "pid": os.getpid(), "ppid": os.getppid()}) + "\n")


def main(argv):
    record_argv(argv)
    program = os.path.basename(argv[0])
    args = argv[1:]
    if program == "k3s" and args and args[0] in ("kubectl", "crictl", "ctr"):
        program, args = args[0], args[1:]
    if program == "kubectl":
        return kubectl(args)
    if program == "helm":
        return helm(args)
    if program in ("crictl", "ctr"):
        print(f"{program} (SIMULATION): no containers are run on simulated hosts")
        return
    if args[:1] in (["--version"], ["-v"], ["version"]):
        print(f"k3s version {VERSION} (simulation)\ngo version go1.24.0")
        return
    if args[:1] == ["server"]:
        return run_server(args[1:])
    if args[:1] == ["agent"]:
        return run_agent(args[1:])
    die(f"k3s (SIMULATION): unknown command {' '.join(args)!r}")


if __name__ == "__main__":
    main(sys.argv)
