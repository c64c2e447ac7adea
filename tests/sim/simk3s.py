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


def write_containerd_config(config):
    """Regenerate config.toml at every start, honouring templates. A template that does not
    render, or renders TOML containerd refuses, stops K3s from starting (as upstream)."""
    nvidia_bin = find_nvidia_runtime()
    default_runtime = config.get("default-runtime") or ""
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
    return {"runtimes": sorted(containerd.get("runtimes", {})),
            "default_runtime": containerd.get("default_runtime_name", "runc")}


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
                     "releases": {}, "jobs": {}, "labels": {}, "deleted_plugin_pods": {}}
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


def run_server(argv):
    config = load_config(argv)
    if fault("k3s-fail-start") is not None:
        die('level=fatal msg="simulated failure: K3s could not start (fault k3s-fail-start)"')
    slow_start()
    try:
        containerd = write_containerd_config(config)
    except ValueError as e:
        die(f'level=fatal msg="containerd exited: {e}"')
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
    try:
        containerd = write_containerd_config(config)
    except ValueError as e:
        die(f'level=fatal msg="containerd exited: {e}"')
    # The sim's API is plain HTTP on the server's 6443 (real K3s: HTTPS with the token's CA hash).
    url = re.sub(r"^https://", "http://", server.rstrip("/")) + "/v1-sim/node"
    started = time.time()
    for attempt in range(30):
        try:
            post(url, {"token": token, "node": node_report(config, "agent", containerd, started)})
            break
        except urllib.error.HTTPError as e:
            if e.code == 401:
                die('level=fatal msg="Failed to validate connection to cluster: token is not valid '
                    '(401 Unauthorized)"')
            time.sleep(1)
        except OSError:
            time.sleep(1)
    else:
        die(f'level=fatal msg="failed to contact server {server}"')
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
    ready = time.time() - node["heartbeat"] < STALE_S and (node["role"] != "server" or server_running(state))
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node["name"], "labels": labels},
            "status": {"capacity": capacity, "allocatable": allocatable,
                       "addresses": [{"type": "InternalIP", "address": node["address"]}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown",
                                       "reason": "KubeletReady" if ready else "NodeStatusUnknown"}],
                       "nodeInfo": {"kubeletVersion": node["version"], "containerRuntimeVersion": "containerd://2.0.5-k3s1"}}}


def pod(name, namespace, labels, node, phase, ready, reason="", spec=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": dict(spec or {}, nodeName=node),
            "status": {"phase": phase, "reason": reason,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def release_pods(state):
    pods = []
    for release in state["releases"].values():
        ns = release["namespace"]
        if release["status"] != "deployed":
            continue
        if release["chart"] == "nvidia-device-plugin":
            for node in state["nodes"].values():
                plugin = plugin_on_node(state, node)
                if plugin is None:
                    continue
                labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/instance": release["name"]}
                if plugin["running"]:
                    pods.append(pod(f"{release['name']}-{node['name']}", ns, labels, node["name"], "Running", True))
                else:
                    pods.append(pod(f"{release['name']}-{node['name']}", ns, labels, node["name"], "Running", False,
                                    reason=f"CrashLoopBackOff: {plugin['reason']}"))
        elif release["chart"] == "jupyterhub":
            server = next((n for n in state["nodes"].values() if n["role"] == "server"), None)
            never = fault("hub-never-ready") is not None  # read where kubectl runs: the server
            for component in ("hub", "proxy"):
                labels = {"app": "jupyterhub", "component": component, "release": release["name"]}
                ready = not (never and component == "hub")
                pods.append(pod(f"{component}-{release['revision']}", ns, labels,
                                server["name"] if server else "", "Running", ready))
    return pods


def schedule(state, job):
    """Place the Job's pod: the node must offer the GPU resource it asks for."""
    spec = job["spec"]["template"]["spec"]
    wanted = {}
    for container in spec.get("containers", []):
        for key, value in ((container.get("resources") or {}).get("limits") or {}).items():
            if key.startswith("nvidia.com/"):
                wanted[key] = wanted.get(key, 0) + int(value)
    selector = spec.get("nodeSelector") or {}
    runtime_class = spec.get("runtimeClassName")
    if runtime_class and runtime_class not in state["runtimeclasses"]:
        return "Failed", None, f'pod rejected: RuntimeClass "{runtime_class}" not found', ""
    nodes = [node_object(state, n) for n in state["nodes"].values()]
    fits, reasons = [], {}
    for node in nodes:
        labels = node["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            reasons["didn't match Pod's node affinity/selector"] = reasons.get("didn't match Pod's node affinity/selector", 0) + 1
            continue
        if node["status"]["conditions"][0]["status"] != "True":
            reasons["node(s) were not ready"] = reasons.get("node(s) were not ready", 0) + 1
            continue
        short = [k for k, v in wanted.items() if int(node["status"]["allocatable"].get(k, "0")) < v]
        if short:
            for k in short:
                reasons[f"Insufficient {k}"] = reasons.get(f"Insufficient {k}", 0) + 1
            continue
        fits.append(node)
    if not fits:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        return "Pending", None, f"0/{len(nodes)} nodes are available: {detail}.", ""
    node = fits[0]
    raw = state["nodes"][node["metadata"]["name"]]
    uses_nvidia = (runtime_class == "nvidia") or raw["containerd"]["default_runtime"] == "nvidia"
    if wanted and (not uses_nvidia or "nvidia" not in raw["containerd"]["runtimes"]):
        return "Failed", node["metadata"]["name"], "", "CUDA error: no CUDA-capable device is detected\nTest FAILED\n"
    # What the container sees (NVIDIA container runtime): the allocated GPU when it asked for one;
    # none under runc or with NVIDIA_VISIBLE_DEVICES=void; ALL of them under the nvidia runtime
    # when it asked for none and the image says "all" (NVIDIA/k8s-device-plugin#87, #1596).
    env = {e.get("name"): e.get("value") for c in spec.get("containers", []) for e in c.get("env") or []}
    uuids = raw.get("uuids", [])
    if not uses_nvidia or "nvidia" not in raw["containerd"]["runtimes"] or env.get("NVIDIA_VISIBLE_DEVICES") == "void":
        visible = []
    else:
        visible = uuids[:1] if wanted else uuids
    lines = [f"GPU {i}: {raw['model']} (UUID: {uuid})" for i, uuid in enumerate(visible)]
    if wanted:
        lines += ["[Vector addition of 50000 elements]", "Copy input data from the host memory to the CUDA device",
                  "CUDA kernel launch with 196 blocks of 256 threads",
                  "Copy output data from the CUDA device to the host memory", "Test PASSED", "Done"]
    elif not visible:
        lines.append("No devices were found")
    return "Succeeded", node["metadata"]["name"], "", "\n".join(lines) + "\n"


def job_pods(state):
    pods = []
    for key, job in state["jobs"].items():
        ns, name = key.split("/", 1)
        phase, node, message, logs = job["placement"]
        labels = dict((job["spec"]["template"].get("metadata") or {}).get("labels") or {}, **{"job-name": name})
        p = pod(f"{name}-sim", ns, labels, node or "", phase, False, reason=message, spec=job["spec"]["template"]["spec"])
        p["sim_logs"] = logs
        pods.append(p)
    return pods


def refresh_jobs(state):
    """The scheduler retries Pending pods; a pod that ran keeps its result."""
    for job in state["jobs"].values():
        if job["placement"][0] == "Pending":
            job["placement"] = list(schedule(state, job))


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
            if rest[:1] == ["restart"]:
                state["deleted_plugin_pods"] = {}
                for node in state["nodes"].values():
                    node["unhealthy_plugin"] = False
                print(f"{rest[1]} restarted")
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
                phase = job["placement"][0]
                status = {"succeeded": 1} if phase == "Succeeded" else {"failed": 1} if phase == "Failed" else {"active": 1}
                conditions = ([{"type": "Complete", "status": "True"}] if phase == "Succeeded" else
                              [{"type": "Failed", "status": "True"}] if phase == "Failed" else [])
                items.append(dict(job, status=dict(status, conditions=conditions)))
        return items, "Job"
    if kind in ("runtimeclass", "runtimeclasses"):
        return [{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": n}, "handler": rc["handler"]}
                for n, rc in sorted(state["runtimeclasses"].items())], "RuntimeClass"
    if kind in ("namespace", "namespaces", "ns"):
        return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in state["namespaces"]], "Namespace"
    if kind in ("event", "events", "ev"):
        events = []
        for p in job_pods(state):
            if p["status"]["phase"] == "Pending" and (everywhere or p["metadata"]["namespace"] == ns):
                events.append({"kind": "Event", "type": "Warning", "reason": "FailedScheduling",
                               "message": p["status"]["reason"], "metadata": {"name": p["metadata"]["name"] + ".sim",
                                                                                "namespace": p["metadata"]["namespace"]},
                               "involvedObject": {"kind": "Pod", "name": p["metadata"]["name"]}})
        return events, "Event"
    die(f'error: the server doesn\'t have a resource type "{kind}"')


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
            job["placement"] = list(schedule(state, job))
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
            if p["metadata"]["labels"].get("app.kubernetes.io/name") == "nvidia-device-plugin":
                # A new plugin pod starts and sees the GPUs healthy again (the #426 heal).
                node = state["nodes"].get(p["spec"]["nodeName"])
                if node:
                    node["unhealthy_plugin"] = False
            print(f'pod "{p["metadata"]["name"]}" deleted')
        if not deleted and "--ignore-not-found" not in flags:
            die(f'Error from server (NotFound): pods "{name}" not found')
    else:
        die(f"kubectl (SIMULATION): delete {kind} not simulated")


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
                die(f'Error from server (BadRequest): container "cuda" in pod "{p["metadata"]["name"]}" is waiting to start: ContainerCreating')
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
