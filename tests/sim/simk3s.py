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
import importlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import sys
import threading
import time


class _OnFirstUse:
    """A module imported when first used. Every `kubectl get`, `helm version` and `k3s --version`
    a probe runs starts this file anew; http.server, yaml and tomllib are two thirds of that start
    (python3 -X importtime: about 60 of 90 ms) and only the long-running `k3s server`, YAML output
    and containerd templates need them. For a package, an attribute is its submodule."""

    def __init__(self, name: str, package: bool = False):
        self._name, self._package = name, package

    def __getattr__(self, attr):
        if self._package:
            return importlib.import_module(f"{self._name}.{attr}")
        return getattr(importlib.import_module(self._name), attr)


http = _OnFirstUse("http", package=True)
tarfile = _OnFirstUse("tarfile")
tomllib = _OnFirstUse("tomllib")
urllib = _OnFirstUse("urllib", package=True)
yaml = _OnFirstUse("yaml")


def _request_handler():
    """The base of the API's and the hub proxy's handlers, imported only by a process that serves."""
    serving = os.path.basename(sys.argv[0]) == "k3s" and sys.argv[1:2] in (["server"], ["agent"])
    return http.server.BaseHTTPRequestHandler if serving else object

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
            "faults": sorted(os.listdir(FAULTS)) if os.path.isdir(FAULTS) else [], "image_pull_s": image_pull_seconds(),
            **gpu_facts()}


def image_pull_seconds() -> float:
    """How long this node takes to pull one image it does not have (a test setting standing for
    the link's speed; CUDA notebook images are several GB): /etc/gpuhub-sim/image-pull-seconds."""
    try:
        return max(0.0, float(open(f"{SIM_ETC}/image-pull-seconds").read().strip() or 0))
    except (OSError, ValueError):
        return 0.0


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


class Api(_request_handler()):
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


class HubProxy(_request_handler()):
    """The JupyterHub release's proxy as users meet it: HTTPS on 443 with the certificate the
    test laid in /etc/gpuhub-sim/tls (standing in for Let's Encrypt), login -> GitHub."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        with cluster() as state:
            release = next((r for r in deployed_releases(state) if r["chart"] == "jupyterhub"), None)
            if release is not None:
                _, env_error = hub_environment(state, release)
                client_id = hub_client_id(state, release)
        if release is None:
            return self.reply(404, "no JupyterHub release")
        if fault("hub-never-ready") is not None or env_error:
            return self.reply(503, "Service Unavailable: the hub is not ready")
        github = ((release["values"].get("hub") or {}).get("config") or {}).get("GitHubOAuthenticator") or {}
        if self.path.startswith("/hub/oauth_login") and github:
            query = urllib.parse.urlencode({"client_id": client_id, "response_type": "code",
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
    for release in deployed_releases(state):
        if release["chart"] == "nvidia-device-plugin":
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
    replicas = 1
    for resource in slicing.get("resources") or []:
        if resource.get("name") == "nvidia.com/gpu":
            replicas = int(resource.get("replicas", 1))
    shared = replicas > 1
    # device-plugin v0.20.0: only renameByDefault decides the name. A resource's own `rename` is
    # dropped with a warning (api/config/v1/config.go DisableResourceNamingInConfig, called by
    # cmd/nvidia-device-plugin/main.go; replicas.go disableResoureRenaming sets it to NAME.shared
    # when renameByDefault is true, to "" when false). NAME.shared: resources.go
    # DefaultSharedRename, consts.go DefaultSharedResourceNameSuffix.
    renamed = shared and bool(slicing.get("renameByDefault"))
    # failRequestsGreaterThanOne is a *bool with no default for time-slicing (replicas.go; only MPS
    # gets true by default, config.go NewConfig): unset means requests > 1 are allowed.
    return {"running": True, "resource": "nvidia.com/gpu.shared" if renamed else "nvidia.com/gpu",
            "replicas": replicas, "shared": shared, "renamed": renamed, "gfd": gfd,
            "fail_requests_greater_than_one": shared and slicing.get("failRequestsGreaterThanOne") is True}


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
    for release in deployed_releases(state):
        ns = release["namespace"]
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
            _, env_error = hub_environment(state, release)
            for component in ("hub", "proxy"):
                labels = {"app": "jupyterhub", "component": component, "release": release["name"]}
                image = f"quay.io/jupyterhub/k8s-{component}"
                if component == "hub" and env_error:
                    # The kubelet cannot build the container's config: no container, waiting
                    # CreateContainerConfigError with the env error as message (pkg/kubelet/
                    # kuberuntime/kuberuntime_container.go startContainer returns
                    # ErrCreateContainerConfig when generateContainerConfig fails; read in the code
                    # index, the version not pinned); the pod stays Pending and not Ready.
                    status = container_status(component, image, waiting("CreateContainerConfigError", env_error))
                    pods.append(pod(f"{component}-{release['revision']}", ns, labels, server["name"] if server else "",
                                    "Pending", containers=[status], host_ip=server["address"] if server else ""))
                    continue
                # hub-never-ready: the hub runs but its readiness probe fails (ready false, running).
                ready = not (never and component == "hub")
                status = container_status(component, image, running(), ready=ready)
                pods.append(pod(f"{component}-{release['revision']}", ns, labels, server["name"] if server else "",
                                "Running", containers=[status], host_ip=server["address"] if server else ""))
    return pods


def hub_environment(state, release):
    """(env, error) of the hub container: Z2JH 4.4.0 hub.extraEnv (a list of EnvVars, or a map
    whose key is the name unless the value names one: templates/_helpers.tpl jupyterhub.extraEnv)
    resolved as the kubelet does (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables, read in
    the code index, the version not pinned): a plain value as is; valueFrom.secretKeyRef from the
    Secret in the pod's namespace, base64-decoded; a missing Secret is the lookup's NotFound
    (`secret "NAME" not found`, the object cache's wording as kubectl describe shows it: from
    knowledge, not read here), a missing key "couldn't find key KEY in Secret NS/NAME"; an
    optional reference is skipped. Other valueFrom kinds are not simulated (left out of env)."""
    import base64
    values = (release.get("values") or {}).get("hub") or {}
    given = values.get("extraEnv") or {}
    entries = given if isinstance(given, list) else [
        dict(v, name=v.get("name") or k) if isinstance(v, dict) else {"name": k, "value": v} for k, v in given.items()]
    env, secrets = {}, state.get("secrets", {})
    for entry in entries:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
            continue
        secret = secrets.get(f"{release['namespace']}/{ref.get('name')}")
        if secret is None:
            if ref.get("optional"):
                continue
            return env, f'secret "{ref.get("name")}" not found'
        if ref.get("key") not in secret["data"]:
            if ref.get("optional"):
                continue
            return env, f"couldn't find key {ref.get('key')} in Secret {release['namespace']}/{ref.get('name')}"
        env[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env, None


def hub_client_id(state, release) -> str:
    """The OAuth client id the hub's GitHubOAuthenticator uses: hub.config's, else its environment's
    GITHUB_CLIENT_ID, else OAUTH_CLIENT_ID (OAuthenticator 17.4.0 github.py client_id_env,
    oauth2.py _client_id_default)."""
    github = ((release["values"].get("hub") or {}).get("config") or {}).get("GitHubOAuthenticator") or {}
    if github.get("client_id"):
        return github["client_id"]
    env, _ = hub_environment(state, release)
    return env.get("GITHUB_CLIENT_ID") or env.get("OAUTH_CLIENT_ID", "")


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
    wanted = extended_requests(spec)
    selector = spec.get("nodeSelector") or {}
    runtime_class = spec.get("runtimeClassName")
    if runtime_class and runtime_class not in state["runtimeclasses"]:
        # The RuntimeClass admission plugin refuses the pod, so none exists; the Job controller
        # records it on the Job: event FailedCreate "Error creating: pods \"NAME-\" is forbidden:
        # pod rejected: RuntimeClass \"X\" not found" (kubernetes plugin/pkg/admission/runtimeclass,
        # message from prepareObjects, plugin/pkg/admission/runtimeclass/admission.go, wrapped by
        # admission.NewForbidden; the event from RealPodControl in pkg/controller/controller_utils.go,
        # FailedCreate "Error creating: %v").
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
        free = {k: int(node["status"]["allocatable"].get(k, "0")) - held_on(state, node["metadata"]["name"], k)
                for k in wanted}
        if any(labels.get(k) != v for k, v in selector.items()):
            refuse("node(s) didn't match Pod's node affinity/selector", False)
        elif ready != "True":
            # The node lifecycle controller taints a node whose status is Unknown `unreachable`,
            # one that is not Ready `not-ready` (NoSchedule); the scheduler names the taint.
            taint = "node.kubernetes.io/unreachable" if ready == "Unknown" else "node.kubernetes.io/not-ready"
            refuse(f"node(s) had untolerated taint {{{taint}: }}", False)
        elif any(free[k] < v for k, v in wanted.items()):
            for k, v in wanted.items():
                if free[k] < v:
                    counts[f"Insufficient {k}"] = counts.get(f"Insufficient {k}", 0) + 1
            key = "No preemption victims found for incoming pod"
            preemption[key] = preemption.get(key, 0) + 1
        else:
            fits.append(node)
    if not fits:
        return {"fate": "unschedulable", "message": fit_error(counts, preemption, len(nodes))}
    node = fits[0]
    raw = state["nodes"][node["metadata"]["name"]]
    plugin = plugin_on_node(state, raw) or {}
    asked = wanted.get(plugin.get("resource"), 0)
    if plugin.get("fail_requests_greater_than_one") and asked > 1:
        # device-plugin v0.20.0 internal/rm/rm.go ValidateRequest refuses more than one replica
        # ("%w: maximum request size for shared resources is 1; found %d", errInvalidRequest is
        # "invalid request"), internal/plugin/server.go Allocate wraps it ("invalid allocation
        # request for %q: %w"); the kubelet's device manager fails the pod at admission: phase
        # Failed, reason UnexpectedAdmissionError, "Allocate failed due to ..., which is
        # unexpected" (kubernetes pkg/kubelet/cm/admission/errors.go unexpectedAdmissionError, read in
        # the code index; the version read is not pinned).
        error = (f'invalid allocation request for "{plugin["resource"]}": invalid request: '
                 f"maximum request size for shared resources is 1; found {asked}")
        return {"fate": "rejected", "node": raw["name"], "reason": "UnexpectedAdmissionError",
                "message": f"Allocate failed due to rpc error: code = Unknown desc = {error}, which is unexpected"}
    if "image-pull-fails" in raw.get("faults", []):
        reason, message = pull_backoff(spec["containers"][0].get("image", ""))
        return {"fate": "waiting", "node": raw["name"], "reason": reason, "message": message}
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


def pull_backoff(image: str) -> tuple:
    """(reason, message) of a container whose image cannot be pulled: the kubelet's back-off after
    a failed pull (kubernetes pkg/kubelet/images/image_manager.go: "Back-off pulling image %q" +
    ": " + the previous pull error; containerd's resolver says "REF: not found" for a tag the
    registry does not have)."""
    return "ImagePullBackOff", (f'Back-off pulling image "{image}": ErrImagePull: rpc error: code = NotFound desc = '
                                f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                                f'{image}: not found')


def job_phase(job) -> str:
    fate = job["placement"]["fate"]
    if fate == "rejected":
        return "Failed"  # its one pod failed (backoffLimit 0)
    return fate if fate in ("Succeeded", "Failed") else "Pending"


def extended_requests(spec) -> dict:
    """{resource: count} of the nvidia.com/ resources a pod spec's containers ask for (by limit:
    the API server defaults an extended resource's request to its limit)."""
    wanted = {}
    for container in spec.get("containers", []):
        for key, value in ((container.get("resources") or {}).get("limits") or {}).items():
            if key.startswith("nvidia.com/"):
                wanted[key] = wanted.get(key, 0) + int(value)
    return wanted


def held_on(state, node_name, resource) -> int:
    """What the Pods applied by hand and placed on the node hold of `resource`: the scheduler's
    NodeResourcesFit filter counts the requests of every pod assigned to a node and not finished
    (kubernetes pkg/scheduler/framework/plugins/noderesources/fit.go). gpuhub's own Jobs finish
    at once here, so only those pods count."""
    return sum(extended_requests(doc["spec"]).get(resource, 0) for doc in (state.get("pods") or {}).values()
               if doc.get("placement", {}).get("node") == node_name and doc["placement"]["fate"] == "Running")


def applied_pods(state):
    """Pods applied by hand (`kubectl apply` of kind Pod): a lab's own long-running workloads, a
    model server holding GPU slices. Placed once, when applied, by the same scheduler as the Jobs
    (schedule); a placed pod runs until deleted, its containers Running."""
    pods = []
    for key, doc in sorted((state.get("pods") or {}).items()):
        ns, name = key.split("/", 1)
        fate, spec = doc["placement"], doc["spec"]
        labels = (doc["metadata"].get("labels") or {})
        if fate["fate"] == "unschedulable":
            pods.append(pod(name, ns, labels, None, "Pending", spec=spec, unschedulable=fate["message"]))
            continue
        node = fate.get("node")
        host_ip = state["nodes"].get(node or "", {}).get("address", "")
        if fate["fate"] == "rejected":  # refused at admission, as schedule() says for a Job's pod
            p = pod(name, ns, labels, node, "Failed", spec=spec, host_ip=host_ip)
            p["status"].update({"reason": fate["reason"], "message": fate["message"]})
        else:
            now = running() if fate["fate"] == "Running" else waiting(fate["reason"], fate["message"])
            p = pod(name, ns, labels, node, "Running" if fate["fate"] == "Running" else "Pending", spec=spec,
                    host_ip=host_ip, containers=[container_status(c["name"], c.get("image", ""), now)
                                                 for c in spec.get("containers", [])])
        pods.append(p)
    return pods


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
        elif fate["fate"] == "rejected":
            # Refused at admission: Failed before any container was created.
            p = pod(pod_name, ns, labels, fate["node"], "Failed", spec=spec, owner=("Job", name), host_ip=host_ip)
            p["status"].update({"reason": fate["reason"], "message": fate["message"]})
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
                                  "--for", "--timeout", "--field-selector", "--kubeconfig", "--type",
                                  "--field-manager")):
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
    """Equality-based label selectors, as kubectl takes them: `k=v`, `k==v`, `k!=v` (a label
    missing is not equal: apimachinery pkg/labels/selector.go, Operator NotEquals), joined by `,`."""
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key) == value:
                return False
            continue
        key, _, value = term.replace("==", "=").partition("=")
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
        elif verb == "create" and rest[:1] in (["namespace"], ["ns"]):
            kubectl_create_namespace(state, rest[1:])
        elif verb in ("apply", "create"):
            kubectl_apply(state, flags, ns, create=verb == "create")
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
            elif rest[:1] == ["restart"] and len(rest) > 1 and rest[1].partition("/")[0] in ("deployment", "deploy"):
                # The hub's proxy (hub.https: certificate, a renewed Secret): kubectl stamps the pod
                # template's kubectl.kubernetes.io/restartedAt; recorded, its pods are not remade.
                state.setdefault("restarted", []).append(f"{ns}/{rest[1]}")
                print(f"deployment.apps/{rest[1].partition('/')[2]} restarted")
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
        pods = release_pods(state) + hook_pods(state) + job_pods(state) + https_pods(state) + applied_pods(state)
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
    if kind in ("storageclass", "storageclasses", "sc"):
        return storage_classes(state), "StorageClass"
    if kind in ("persistentvolume", "persistentvolumes", "pv"):
        return [state["pvs"][n] for n in sorted(state.get("pvs", {}))], "PersistentVolume"
    if kind in ("persistentvolumeclaim", "persistentvolumeclaims", "pvc"):
        claims = [state["pvcs"][k] for k in sorted(state.get("pvcs", {}))]
        return [c for c in claims if everywhere or c["metadata"]["namespace"] == ns], "PersistentVolumeClaim"
    if kind in ("secret", "secrets"):
        found = release_secrets(state) + applied_secrets(state) + issued_secrets(state)
        return [s for s in found if everywhere or s["metadata"]["namespace"] == ns], "Secret"
    if kind in ("ingress", "ingresses", "ing", "ingresses.networking.k8s.io"):
        return [i for i in ingresses(state) if everywhere or i["metadata"]["namespace"] == ns], "Ingress"
    if kind in ("clusterissuer", "clusterissuers", "clusterissuers.cert-manager.io"):
        require_cert_manager_crds(state, kind)
        return cluster_issuers(state), "ClusterIssuer"
    if kind in ("certificate", "certificates", "certificates.cert-manager.io"):
        require_cert_manager_crds(state, kind)
        return [c for c in shim_certificates(state) if everywhere or c["metadata"]["namespace"] == ns], "Certificate"
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
        events += hook_events(state, ns, everywhere)
        return events, "Event"
    die(f'error: the server doesn\'t have a resource type "{kind}"')


# K3s's packaged local-path StorageClass (K3s manifests/local-storage.yaml, deployed by the server
# unless `disable: [local-storage]`, a packaged component as pkg/cli/cmds/stage.go DisableItems
# names them), beside the classes applied.
LOCAL_PATH_CLASS = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": "local-path", "annotations": {
                        "defaultVolumeType": "local", "storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer"}


def storage_classes(state):
    """K3s's own `local-path` class (manifests/local-storage.yaml, muicoder/k3s release-1.34;
    provisioner rancher.io/local-path), deployed unless `disable: [local-storage]`
    (pkg/cli/cmds/stage.go DisableItems), beside those applied."""
    classes = dict(state.get("storageclasses", {}))
    if "local-storage" not in (state.get("server") or {}).get("disabled", []):
        classes.setdefault("local-path", LOCAL_PATH_CLASS)
    return [classes[n] for n in sorted(classes)]


def apply_storage(state, doc, ns):
    """StorageClass, PersistentVolume and PersistentVolumeClaim kept as given. Only pre-bound
    claims are simulated: a claim naming its volume (spec.volumeName) is Bound to it and the
    volume's claimRef set, as the PV controller binds them (kubernetes v1.34
    pkg/controller/volume/persistentvolume/pv_controller.go syncUnboundClaim, the
    claim.Spec.VolumeName branch, then bindVolumeToClaim). No provisioner runs here: a claim
    without a volume stays Pending, as local-path's do until a pod uses them
    (volumeBindingMode: WaitForFirstConsumer)."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    if kind == "StorageClass":
        state.setdefault("storageclasses", {})[name] = doc
        return f"storageclass.storage.k8s.io/{name} created"
    if kind == "PersistentVolume":
        doc.setdefault("status", {"phase": "Available"})
        state.setdefault("pvs", {})[name] = doc
        return f"persistentvolume/{name} created"
    claim_ns = doc["metadata"].get("namespace") or ns
    doc["metadata"] = dict(doc["metadata"], namespace=claim_ns, uid=sim_uid(claim_ns, "pvc", name))
    volume = state.get("pvs", {}).get((doc.get("spec") or {}).get("volumeName") or "")
    if volume is not None:
        volume["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": claim_ns, "name": name,
                                      "uid": doc["metadata"]["uid"]}
        volume["status"] = {"phase": "Bound"}
        doc["status"] = {"phase": "Bound"}
    else:
        doc["status"] = {"phase": "Pending"}
    state.setdefault("pvcs", {})[f"{claim_ns}/{name}"] = doc
    return f"persistentvolumeclaim/{name} created"


def event(ns, kind, name, reason, message, component, action=None, kind_="Warning"):
    item = {"apiVersion": "v1", "kind": "Event", "type": kind_, "reason": reason, "message": message,
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


# --- HTTPS: K3s's Traefik, Ingresses, cert-manager -----------------------------------------

def https_pods(state) -> list:
    """Traefik's pod, unless the server runs with `disable: [traefik]`: K3s deploys it as a
    packaged AddOn (manifests/traefik.yaml, a HelmChart helm-controller installs in kube-system;
    docs.k3s.io installation/packaged-components), its pods labelled app.kubernetes.io/name=traefik
    by the Traefik chart. And cert-manager's controller and webhook pods for a deployed
    cert-manager release (v1.21.1 deploy/charts/cert-manager/templates/deployment.yaml,
    webhook-deployment.yaml: app.kubernetes.io/name cert-manager / webhook, component
    controller / webhook). All Running and Ready at once (the simulation pulls no images)."""
    server = next((n for n in state["nodes"].values() if n["role"] == "server"), None)
    pods = []
    if server and state.get("server") and "traefik" not in state["server"].get("disabled", []):
        pods.append(pod("traefik-5d45fc8cc9-" + name_suffix("traefik")[:5], "kube-system",
                        {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-kube-system"},
                        server["name"], "Running", owner=("ReplicaSet", "traefik-5d45fc8cc9"),
                        containers=[container_status("traefik", "rancher/mirrored-library-traefik", running())]))
    for release in cert_manager_releases(state):
        for name, component in (("cert-manager", "controller"), ("webhook", "webhook")):
            full = release["name"] if name == "cert-manager" else f"{release['name']}-{name}"
            pods.append(pod(f"{full}-{name_suffix(full)[:10]}", release["namespace"],
                            {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
                             "app.kubernetes.io/instance": release["name"]},
                            server["name"] if server else "", "Running", owner=("ReplicaSet", full),
                            containers=[container_status(name, f"quay.io/jetstack/cert-manager-{component}", running())]))
    return pods


def cert_manager_releases(state) -> list:
    return [r for r in deployed_releases(state) if r["chart"] == "cert-manager"]


def cert_manager_crds(state) -> bool:
    """The chart installs cert-manager's CRDs only with crds.enabled (or the deprecated
    installCRDs) true (v1.21.1 values.yaml; templates/crd-*.yaml). crds.keep (default true) would
    keep them after an uninstall: not simulated, nothing here uninstalls cert-manager."""
    for release in cert_manager_releases(state):
        values = release.get("values") or {}
        if (values.get("crds") or {}).get("enabled") or values.get("installCRDs"):
            return True
    return False


def require_cert_manager_crds(state, kind):
    """A kind whose CRD is absent: kubectl's RESTMapper finds no match, and cmdutil.CheckErr
    prints the NoResourceMatchError with the group when one was given (kubectl
    pkg/cmd/util/helpers.go checkErr, `the server doesn't have a resource type %q in group %q`)."""
    if not cert_manager_crds(state):
        resource, _, group = kind.partition(".")
        where = f' in group "{group}"' if group else ""
        die(f'error: the server doesn\'t have a resource type "{resource}"{where}')


def ingresses(state) -> list:
    """Ingresses made by hand (state["ingresses"], written by a test's starting state) and the one
    Z2JH 4.4.0 renders with ingress.enabled (templates/ingress.yaml: named "jupyterhub" while
    fullnameOverride is unset, one rule per host to proxy-public's http port, tls and annotations as
    given); helm annotates every object it makes with its release (helm v3.17.3
    pkg/action/validate.go, meta.helm.sh/release-name / -namespace)."""
    found = [dict(i) for i in state.get("ingresses", [])]
    for release in deployed_releases(state):
        values = (release.get("values") or {}).get("ingress") or {}
        if release["chart"] != "jupyterhub" or not values.get("enabled"):
            continue
        paths = [{"path": "/", "pathType": values.get("pathType", "Prefix"),
                  "backend": {"service": {"name": "proxy-public", "port": {"name": "http"}}}}]
        spec = {"rules": [dict({"http": {"paths": paths}}, **({"host": h} if h else {}))
                          for h in values.get("hosts") or [""]]}
        if values.get("ingressClassName"):
            spec["ingressClassName"] = values["ingressClassName"]
        if values.get("tls"):
            spec["tls"] = values["tls"]
        notes = dict(values.get("annotations") or {}, **{"meta.helm.sh/release-name": release["name"],
                                                          "meta.helm.sh/release-namespace": release["namespace"]})
        found.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "spec": spec,
                      "metadata": {"name": "jupyterhub", "namespace": release["namespace"], "annotations": notes,
                                   "labels": {"app": "jupyterhub", "release": release["name"]}}})
    return found


def cluster_issuers(state) -> list:
    """Applied ClusterIssuers with the status cert-manager gives them: an ACME issuer is Ready
    once its account is registered with the ACME server (v1.21.1 pkg/issuer/acme/setup.go,
    reason ACMEAccountRegistered). The simulated cluster reaches no ACME server: it takes the
    registration as done, unless the fault acme-unreachable is set (then
    ErrRegisterACMEAccount, Ready False)."""
    down = fault("acme-unreachable") is not None
    items = []
    for name, doc in sorted((state.get("clusterissuers") or {}).items()):
        ready = {"type": "Ready", "status": "False" if down else "True",
                 "reason": "ErrRegisterACMEAccount" if down else "ACMEAccountRegistered",
                 "message": "Failed to register ACME account: (SIMULATION) the ACME server does not answer" if down
                 else "The ACME account was registered with the ACME server"}
        items.append(dict(doc, status={"conditions": [ready]}))
    return items


def shim_certificates(state) -> list:
    """What cert-manager's ingress-shim makes of each Ingress annotated cert-manager.io/cluster-issuer
    (v1.21.1 pkg/controller/certificate-shim/sync.go buildCertificates): per tls entry a Certificate
    in the Ingress's namespace named after its secretName, dnsNames its hosts, issuerRef the
    annotation's ClusterIssuer. Ready (and its Secret issued) when that issuer is Ready."""
    if not cert_manager_crds(state):
        return []
    ready = {i["metadata"]["name"] for i in cluster_issuers(state)
             if i["status"]["conditions"][0]["status"] == "True"}
    certificates = []
    for ingress in ingresses(state):
        issuer = (ingress["metadata"].get("annotations") or {}).get("cert-manager.io/cluster-issuer")
        for tls in ingress["spec"].get("tls") or [] if issuer else []:
            ok = issuer in ready
            certificates.append({
                "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": tls["secretName"], "namespace": ingress["metadata"]["namespace"],
                             "ownerReferences": [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                                  "name": ingress["metadata"]["name"], "controller": True}]},
                "spec": {"dnsNames": list(tls.get("hosts") or []), "secretName": tls["secretName"],
                         "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"}},
                "status": {"conditions": [{"type": "Ready", "status": "True" if ok else "False",
                                           "reason": "Ready" if ok else "Issuing"}]}})
    return certificates


def issued_secrets(state) -> list:
    """The kubernetes.io/tls Secret of each Ready Certificate, annotated with the Certificate and
    issuer (cert-manager v1.21.1 pkg/apis/certmanager/v1/types.go CertificateNameKey,
    IssuerNameAnnotationKey). Its data is a marker, not a certificate: nothing here serves it."""
    import base64
    items = []
    for c in shim_certificates(state):
        if c["status"]["conditions"][0]["status"] != "True":
            continue
        marker = base64.b64encode(f"(SIMULATION) issued for {', '.join(c['spec']['dnsNames'])}".encode()).decode()
        items.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                      "metadata": {"name": c["spec"]["secretName"], "namespace": c["metadata"]["namespace"],
                                   "annotations": {"cert-manager.io/certificate-name": c["metadata"]["name"],
                                                   "cert-manager.io/issuer-name": c["spec"]["issuerRef"]["name"],
                                                   "cert-manager.io/issuer-kind": "ClusterIssuer"}},
                      "data": {"tls.crt": marker, "tls.key": marker}})
    return items


def applied_secrets(state) -> list:
    return [dict(doc) for _, doc in sorted((state.get("secrets") or {}).items())]


def kubectl_get(state, rest, flags, ns):
    if not rest:
        die("error: You must specify the type of resource to get.")
    kind, _, name = rest[0].partition("/")
    if not name and len(rest) > 1:
        name = rest[1]
    if "," in kind and not name:
        # Several types: every item of each, in the order given, in one v1 List (kubectl v0.34.9
        # pkg/cmd/get/get.go printGeneric), each item with its own kind.
        items = [i for k in kind.split(",") for i in objects(state, k, ns, flags)[0]]
        output([i for i in items if matches(i["metadata"].get("labels", {}), flags.get("-l"))], flags)
        return
    items, list_kind = objects(state, kind, ns, flags)
    items = [i for i in items if matches(i["metadata"].get("labels", {}), flags.get("-l"))]
    field = flags.get("--field-selector", "")
    if field.startswith("involvedObject.name="):
        items = [i for i in items if i["involvedObject"]["name"] == field.split("=", 1)[1]]
    elif field.startswith("metadata.name="):
        # Every kind takes metadata.name (and metadata.namespace) as a field selector
        # (apimachinery pkg/fields, DefaultMetaV1FieldSelectorConversion); a list, even empty.
        items = [i for i in items if i["metadata"]["name"] == field.split("=", 1)[1]]
    elif field:
        die(f'kubectl (SIMULATION): field selector {field} not simulated')
    if name:
        items = [i for i in items if i["metadata"]["name"] == name]
        if not items:
            plural = {"Node": "nodes", "Pod": "pods", "Job": "jobs.batch", "RuntimeClass": "runtimeclasses.node.k8s.io",
                      "Namespace": "namespaces"}.get(list_kind, list_kind.lower())
            die(f'Error from server (NotFound): {plural} "{name}" not found')
        output(items, flags, single=True)
    else:
        output(items, flags, kind=list_kind)


def kubectl_create_namespace(state, rest):
    """`kubectl create namespace NAME` (kubectl pkg/cmd/create/create_namespace.go: exactly one
    NAME); an existing one is the API server's 409 AlreadyExists, printed by cmdutil.CheckErr as
    `Error from server (AlreadyExists): ...` (the wording of the 409 body is apimachinery's
    NewAlreadyExists, `namespaces "NAME" already exists`)."""
    if len(rest) != 1:
        die("error: exactly one NAME is required, got " + str(len(rest)))
    name = rest[0]
    if name in state["namespaces"]:
        die(f'Error from server (AlreadyExists): namespaces "{name}" already exists')
    state["namespaces"].append(name)
    print(f"namespace/{name} created")


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def apply_secret(state, doc, dns, flags, create):
    """A v1 Secret through `kubectl apply` or `create -f`, as kubectl v0.34.9 pkg/cmd/apply/apply.go
    applyOneObject does it: --server-side sends the object as an apply patch and prints
    "serverside-applied" (no last-applied annotation with a --field-manager of its own:
    saveLastApplyAnnotationIfNecessary); client-side apply first writes the whole object, data
    included, into the kubectl.kubernetes.io/last-applied-configuration annotation
    (CreateApplyAnnotation) and prints "created" or "configured". The namespace must exist (the
    API server's NotFound). Simplified: the one field manager owns every key, so an apply
    replaces the data as a whole (server-side apply would keep keys other managers set)."""
    import base64
    name = doc["metadata"]["name"]
    if dns not in state["namespaces"]:
        die(f'Error from server (NotFound): error when creating "STDIN": namespaces "{dns}" not found')
    data = dict(doc.get("data") or {})
    for key, value in (doc.get("stringData") or {}).items():  # the API server merges stringData into data
        data[key] = base64.b64encode(str(value).encode()).decode()
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            die(f'Error from server (BadRequest): error when creating "STDIN": Secret in version "v1" cannot be '
                f'handled as a Secret: illegal base64 data at input byte 0 (key {key})')
    secrets = state.setdefault("secrets", {})
    key = f"{dns}/{name}"
    if create and key in secrets:
        die(f'Error from server (AlreadyExists): error when creating "STDIN": secrets "{name}" already exists')
    metadata = {"name": name, "namespace": dns, "labels": dict(doc["metadata"].get("labels") or {}),
                "uid": sim_uid(dns, "Secret", name), "creationTimestamp": STAMP}
    annotations = dict(doc["metadata"].get("annotations") or {})
    if not create and "--server-side" not in flags:
        annotations[LAST_APPLIED] = json.dumps(doc, sort_keys=True)
    if annotations:
        metadata["annotations"] = annotations
    existed = key in secrets
    secrets[key] = {"apiVersion": "v1", "kind": "Secret", "type": doc.get("type", "Opaque"), "metadata": metadata,
                    "data": data}
    verb = "created" if create else "serverside-applied" if "--server-side" in flags else \
        "configured" if existed else "created"
    print(f"secret/{name} {verb}")


def kubectl_apply(state, flags, ns, create=False):
    source = flags.get("-f")
    text = sys.stdin.read() if source in ("-", None) else open(source).read()
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        kind, name = doc.get("kind"), doc["metadata"]["name"]
        dns = doc["metadata"].get("namespace") or ns
        if kind == "Secret":
            apply_secret(state, doc, dns, flags, create)
        elif kind == "Namespace":
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
        elif kind == "ClusterIssuer":
            if not cert_manager_crds(state):
                # kubectl finds no REST mapping for a kind whose CRD is absent (kubectl v0.34
                # apply: "resource mapping not found ... ensure CRDs are installed first").
                die(f'error: resource mapping not found for name: "{name}" namespace: "" from "STDIN": no matches '
                    f'for kind "ClusterIssuer" in version "cert-manager.io/v1"\nensure CRDs are installed first')
            old_doc = state.setdefault("clusterissuers", {}).get(name)
            state["clusterissuers"][name] = doc
            print(f"clusterissuer.cert-manager.io/{name} " + ("created" if old_doc is None else "configured"))
        elif kind in ("StorageClass", "PersistentVolume", "PersistentVolumeClaim"):
            print(apply_storage(state, doc, ns))
        elif kind == "Pod":
            # A bare Pod (core/v1): the scheduler places it (schedule, as a Job's pod), the kubelet
            # runs it; kubectl prints "pod/<name> created" (kubectl v0.34 apply).
            key = f"{dns}/{name}"
            if key in state.setdefault("pods", {}):
                # A pod's spec is immutable but for a few fields (kubernetes pkg/apis/core/validation
                # ValidatePodUpdate): the simulation keeps the pod as it was placed.
                print(f"pod/{name} unchanged")
                continue
            placed = {"metadata": dict(doc["metadata"], namespace=dns), "spec": dict(doc.get("spec") or {})}
            fate = schedule(state, {"metadata": placed["metadata"], "spec": {"template": {"spec": placed["spec"]}}})
            # A pod that fits starts and keeps running (what its command does is not simulated).
            placed["placement"] = fate if fate["fate"] in ("unschedulable", "rejected", "waiting", "no-pod") \
                else {"fate": "Running", "node": fate.get("node")}
            if fate["fate"] == "no-pod":
                die(f'Error from server (Forbidden): error when creating "STDIN": {fate["message"].split(": ", 1)[1]}')
            state["pods"][key] = placed
            print(f"pod/{name} created")
        elif kind == "Ingress":
            # networking.k8s.io/v1 Ingress, kept as applied (no controller status: Traefik's
            # address is not simulated); kubectl names it by resource.group as it prints every
            # applied object (kubectl v0.34 apply: "<resource>.<group>/<name> created|configured").
            found = state.setdefault("ingresses", [])
            old_doc = next((i for i in found if i["metadata"]["name"] == name
                            and i["metadata"].get("namespace") == dns), None)
            if old_doc is not None:
                found.remove(old_doc)
            found.append(dict(doc, metadata=dict(doc["metadata"], namespace=dns)))
            print(f"ingress.networking.k8s.io/{name} " + ("created" if old_doc is None else "configured"))
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
        deleted = [p for p in release_pods(state) + job_pods(state) + applied_pods(state)
                   if p["metadata"]["namespace"] == ns and (p["metadata"]["name"] == name if name else matches(p["metadata"]["labels"], flags.get("-l")))]
        for p in deleted:
            (state.get("pods") or {}).pop(f"{ns}/{p['metadata']['name']}", None)
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
                # kubelet pkg/kubelet/kubelet_pods.go validateContainerLogStatus (read in a
                # v1.29-era copy): the waiting reason, but ErrImagePull -> "image can't be pulled"
                # and ImagePullBackOff -> "trying and failing to pull image".
                statuses = p["status"].get("containerStatuses") or [{}]
                reason = ((statuses[0].get("state") or {}).get("waiting") or {}).get("reason", "ContainerCreating")
                reason = {"ErrImagePull": "image can't be pulled",
                          "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
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
# helm v3.17.3 as gpuhub meets it. A release is kept as its revisions, the way helm's storage
# keeps one record per revision (pkg/release/release.go, info.go):
#   state["releases"]["NS/NAME"] = {"name", "namespace", "revisions": [{"revision", "status",
#   "chart", "version", "values", "updated_ns", "description"}, ...]}
# A command that changes a release records its pending revision first and commits it, as helm
# does (pkg/action/install.go Releases.Create before performInstall; upgrade.go and rollback.go
# likewise), then lets the state go while hooks run (kubectl answers meanwhile): a helm that dies
# in between (SIGKILL, or SIGHUP when its SSH session drops: helm traps only SIGINT and SIGTERM,
# cmd/helm/upgrade.go signal.Notify) leaves the release pending-*.

HELM_VERSION = "v3.17.3"
HELM_TIMEOUT_S = 300  # cmd/helm/upgrade.go, install.go: --timeout, default 300*time.Second
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")  # pkg/release/status.go IsPending
# pkg/action/list.go ListStates; SetStateMask: with no state flag, ListDeployed | ListFailed.
LIST_STATES = {"--deployed": ("deployed",), "--failed": ("failed",), "--pending": PENDING,
               "--superseded": ("superseded",), "--uninstalled": ("uninstalled",),
               "--uninstalling": ("uninstalling",)}
ERR_PENDING = "another operation (install/upgrade/rollback) is in progress"  # pkg/action/action.go errPending
HOOK_PULLER, HOOK_AWAITER = "hook-image-puller", "hook-image-awaiter"


def _fraction(ns: int) -> tuple:
    seconds, fraction = divmod(ns, 10**9)
    digits = f"{fraction:09d}".rstrip("0")
    return seconds, f".{digits}" if digits else ""


def go_time(ns: int) -> str:
    """Go's time.Time.String() in UTC, the test hosts' zone ('2006-01-02 15:04:05.999999999 -0700
    MST': trailing zeros of the fraction dropped): `helm list`'s `updated` (cmd/helm/list.go)."""
    seconds, fraction = _fraction(ns)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + fraction + " +0000 UTC"


def go_json_time(ns: int) -> str:
    """time.Time.MarshalJSON, RFC 3339 with nanoseconds: `helm history -o json`'s `updated`
    (cmd/helm/history.go releaseInfo.Updated, pkg/time/time.go)."""
    seconds, fraction = _fraction(ns)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + fraction + "Z"


def go_duration(text: str) -> float:
    """A --timeout as Go's time.ParseDuration reads it: '300s', '90m', '1h30m'."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text or "")
    if not parts or "".join(v + u for v, u in parts) != text:
        die(f'Error: invalid argument "{text}" for "--timeout" flag: time: invalid duration "{text}"')
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for v, u in parts)


def deployed_releases(state) -> list:
    """Each release's deployed revision (the one whose objects run), flat: name, namespace, chart,
    version, values, revision, status. A pending or failed upgrade leaves the previous one
    deployed (pkg/action/upgrade.go supersedes it only on success)."""
    found = []
    for record in state["releases"].values():
        revision = next((r for r in reversed(record["revisions"]) if r["status"] == "deployed"), None)
        if revision:
            found.append(dict(revision, name=record["name"], namespace=record["namespace"]))
    return found


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


# --- Zero to JupyterHub's pre-install / pre-upgrade image pull (chart 4.4.0) ---------------------

def _image(spec, default_name, version):
    spec = spec or {}
    return f"{spec.get('name') or default_name}:{spec.get('tag') or version}"


def hook_init_containers(version: str, values: dict) -> list:
    """[(init container, image)] of the hook-image-puller DaemonSet, in the chart's order
    (templates/image-puller/_helpers-daemonset.tpl; Go templates range over maps in key order),
    or [] when the hook is off (prePuller.hook.enabled). Chart defaults from values.yaml; the
    published chart's "set-by-chartpress" tags are its version."""
    pre, single = values.get("prePuller") or {}, values.get("singleuser") or {}
    if (pre.get("hook") or {}).get("enabled", True) is False:
        return []
    items = []
    cloud = single.get("cloudMetadata") or {}
    if (not cloud["enabled"]) if "enabled" in cloud else cloud.get("blockWithIptables", True):
        items.append(("image-pull-metadata-block",
                      _image((single.get("networkTools") or {}).get("image"), "quay.io/jupyterhub/k8s-network-tools",
                             version)))
    items.append(("image-pull-singleuser", _image(single.get("image"), "quay.io/jupyterhub/k8s-singleuser-sample",
                                                  version)))
    for k, container in enumerate((single.get("initContainers") or []) + (single.get("extraContainers") or [])):
        items.append((f"image-pull-singleuser-init-and-extra-containers-{k}", container["image"]))
    if pre.get("pullProfileListImages", True):
        for k, profile in enumerate(single.get("profileList") or []):
            image = (profile.get("kubespawner_override") or {}).get("image")
            if image:
                items.append((f"image-pull-singleuser-profilelist-{k}", image))
            for option, spec in sorted((profile.get("profile_options") or {}).items()):
                for choice, choice_spec in sorted((spec.get("choices") or {}).items()):
                    image = (choice_spec.get("kubespawner_override") or {}).get("image")
                    if image:
                        items.append((f"image-pull-profile-{k}-option-{option}-{choice}", image))
    for k, extra in sorted((pre.get("extraImages") or {}).items()):
        items.append((f"image-pull-{k}", f"{extra['name']}:{extra['tag']}"))
    return items


def hook_checksum(items) -> str:
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def start_hook(state, key, version, values):
    """Create the hook's DaemonSet (its pods on every node that runs user pods: here every Ready
    node) and Job, when it is due: with prePuller.hook.pullOnlyOnChanges (default true) only when
    the DaemonSet differs from the one the hub's ConfigMap records from the last release that
    went through (checksum_hook-image-puller, _helpers-daemonset.tpl ...hook.install). A previous
    hook left behind by a failed run is deleted first (hook-delete-policy before-hook-creation);
    what its pods pulled stays in the nodes' image stores. -> the hook, or None."""
    finish_hook(state, key)
    items = hook_init_containers(version, values)
    pre = values.get("prePuller") or {}
    only_on_changes = (pre.get("hook") or {}).get("pullOnlyOnChanges", True)
    if not items or (only_on_changes and state.setdefault("hub_checksums", {}).get(key) == hook_checksum(items)):
        return None
    nodes = {}
    for node in state["nodes"].values():
        if time.time() - node.get("heartbeat", 0) < STALE_S:
            nodes[node["name"]] = {"cached": sorted(state.setdefault("images", {}).get(node["name"], [])),
                                   "pull_s": float(node.get("image_pull_s", 0)),
                                   "fails": "image-pull-fails" in node.get("faults", [])}
    hook = {"started": time.time(), "items": items, "nodes": nodes, "checksum": hook_checksum(items)}
    state.setdefault("hooks", {})[key] = hook
    return hook


def hook_progress(hook, node, now=None):
    """On `node`, at `now`: [(init container, image, 'done'|'pulling'|'failed'|'waiting')]. The
    kubelet pulls one image at a time (serializeImagePulls, default true) as each init container
    comes up, in order; an image already in the node's store starts at once."""
    view = hook["nodes"][node]
    elapsed = (now or time.time()) - hook["started"]
    have, spent, states, blocked = set(view["cached"]), 0.0, [], False
    for name, image in hook["items"]:
        if blocked:
            states.append((name, image, "waiting"))
            continue
        if image not in have:
            if view["fails"]:
                states.append((name, image, "failed"))
                blocked = True
                continue
            if elapsed < spent + view["pull_s"]:
                states.append((name, image, "pulling"))
                blocked = True
                continue
            spent += view["pull_s"]
            have.add(image)
        states.append((name, image, "done"))
    return states


def hook_done(hook) -> bool:
    return all(s == "done" for node in hook["nodes"] for _, _, s in hook_progress(hook, node))


def finish_hook(state, key):
    """Delete the hook (hook-succeeded, or before the next one): the images pulled stay."""
    hook = state.setdefault("hooks", {}).pop(key, None)
    if hook:
        for node in hook["nodes"]:
            store = state.setdefault("images", {}).setdefault(node, [])
            store.extend(i for _, i, s in hook_progress(hook, node) if s == "done" and i not in store)


def hook_pods(state) -> list:
    """The hook's pods as the API shows them while it runs: one hook-image-puller pod per node
    (Pending while an init container's image is pulled: the kubelet's default waiting reason
    with init containers is PodInitializing, pkg/kubelet/kubelet_pods.go; ErrImagePull /
    ImagePullBackOff when a pull fails), and the image-awaiter Job's pod."""
    pods = []
    for key, hook in (state.get("hooks") or {}).items():
        ns, release = key.split("/", 1)
        labels = {"app": "jupyterhub", "component": HOOK_PULLER, "release": release}
        for node in sorted(hook["nodes"]):
            if node not in state["nodes"]:
                continue
            init = []
            for name, image, status in hook_progress(hook, node):
                state_ = {"done": terminated(0, "Completed"), "pulling": waiting("PodInitializing"),
                          "waiting": waiting("PodInitializing"), "failed": waiting(*pull_backoff(image))}[status]
                init.append(container_status(name, image, state_))
            done = all(s["state"].get("terminated") for s in init)
            pause = container_status("pause", "registry.k8s.io/pause:3.10",
                                     running() if done else waiting("PodInitializing"))
            p = pod(f"{HOOK_PULLER}-{name_suffix(ns, HOOK_PULLER, node, hook['started'])}", ns, labels, node,
                    "Running" if done else "Pending", owner=("DaemonSet", HOOK_PULLER), init=init,
                    containers=[pause], host_ip=state["nodes"][node].get("address", ""))
            if not done:
                for c in p["status"]["conditions"]:
                    if c["type"] == "Initialized":
                        c.update(status="False", reason="ContainersNotInitialized",
                                 message="containers with incomplete status: ["
                                 + " ".join(s["name"] for s in init if not s["state"].get("terminated")) + "]")
            pods.append(p)
        server = next((n for n in state["nodes"].values() if n["role"] == "server"), None)
        if server:
            awaiter = container_status(HOOK_AWAITER, "quay.io/jupyterhub/k8s-image-awaiter:4.4.0", running())
            pods.append(pod(f"{HOOK_AWAITER}-{name_suffix(ns, HOOK_AWAITER, hook['started'])}", ns,
                            {"app": "jupyterhub", "component": "image-puller", "release": release,
                             "job-name": HOOK_AWAITER}, server["name"], "Running", owner=("Job", HOOK_AWAITER),
                            containers=[awaiter], host_ip=server.get("address", "")))
    return pods


def hook_events(state, ns, everywhere) -> list:
    """The kubelet's Pulling / Pulled / Failed events for the hook's pods (pkg/kubelet/images/
    image_manager.go: 'Pulling image %q', 'Successfully pulled image %q in %v ...')."""
    events = []
    for p in hook_pods(state):
        pns = p["metadata"]["namespace"]
        if not (everywhere or pns == ns) or not p["metadata"]["name"].startswith(HOOK_PULLER):
            continue
        for status in p["status"].get("initContainerStatuses", []):
            name, image, st = p["metadata"]["name"], status["image"], status["state"]
            if st.get("terminated") or st.get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff"):
                events.append(event(pns, "Pod", name, "Pulling", f'Pulling image "{image}"', "kubelet", kind_="Normal"))
            if st.get("terminated"):
                events.append(event(pns, "Pod", name, "Pulled", f'Successfully pulled image "{image}"', "kubelet",
                                    kind_="Normal"))
            elif st.get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff"):
                events.append(event(pns, "Pod", name, "Failed", st["waiting"]["message"], "kubelet"))
        pulling = next((s for s in p["status"].get("initContainerStatuses", [])
                        if s["state"].get("waiting", {}).get("reason") == "PodInitializing"), None)
        if pulling:
            events.append(event(pns, "Pod", p["metadata"]["name"], "Pulling", f'Pulling image "{pulling["image"]}"',
                                "kubelet", kind_="Normal"))
    return events


def run_hook(key, timeout_s):
    """helm's wait for the hook Job (pkg/kube/client.go watchUntilReady, with --timeout): the
    awaiter completes once every hook-image-puller pod runs. -> None, or helm's error."""
    deadline = time.time() + timeout_s
    while True:
        with cluster() as state:
            hook = (state.get("hooks") or {}).get(key)
            if hook is None or hook_done(hook):
                return None
        if time.time() >= deadline:
            # watchtools.UntilWithSync on a context with the timeout: wait.ErrWaitTimeout.
            return "timed out waiting for the condition"
        time.sleep(min(0.5, max(0.0, deadline - time.time())))


# --- the commands ---------------------------------------------------------------------------------

# helm's own labels on a release's Secret (helm v3.17.3 pkg/storage/driver/util.go systemLabels):
# `--labels` may not set them.
HELM_SYSTEM_LABELS = ("name", "owner", "status", "version", "createdAt", "modifiedAt")


def custom_labels(flags, current):
    """`--labels k=v,k2=v2` (pflag StringToString) merged over the last revision's own labels, a
    value "null" unsetting one (helm v3.17.3 pkg/action/upgrade.go mergeCustomLabels; an install
    takes them as given); a system label is refused (ContainsSystemLabels)."""
    given = flags.get("--labels") or flags.get("-l")
    wanted = {}
    if isinstance(given, str) and given:
        for pair in given.split(","):
            key, sep, value = pair.partition("=")
            if not sep:
                die(f'Error: invalid argument "{given}" for "-l, --labels" flag: {pair} must be formatted as key=value')
            wanted[key] = value
    if any(k in HELM_SYSTEM_LABELS for k in wanted):
        die(f"Error: user supplied labels contains system reserved label name. System labels: "
            f"[{' '.join(HELM_SYSTEM_LABELS)}]")
    merged = {**(current or {}), **wanted}
    return {k: v for k, v in merged.items() if v != "null"}


def new_revision(record, status, chart, version, values, description, labels=None):
    revision = {"revision": (record["revisions"][-1]["revision"] + 1) if record["revisions"] else 1,
                "status": status, "chart": chart, "version": version, "values": values,
                "updated_ns": time.time_ns(), "description": description, "labels": dict(labels or {})}
    record["revisions"].append(revision)
    return revision


def settle(key, revision_no, status, description, supersede=False, checksum=None):
    """The end of a command: its revision gets `status`; on success the revisions deployed before
    are superseded (upgrade.go releasingUpgrade, rollback.go performRollback)."""
    with cluster(write=True) as state:
        record = state["releases"].get(key)
        if record is None:
            return
        for r in record["revisions"]:
            if r["revision"] == revision_no:
                r.update(status=status, description=description, updated_ns=time.time_ns())
            elif supersede and r["status"] == "deployed":
                r["status"] = "superseded"
        if status == "deployed":
            finish_hook(state, key)
            if checksum:
                state.setdefault("hub_checksums", {})[key] = checksum


def on_cancel(key, revision_no, release):
    """SIGINT / SIGTERM: helm cancels the operation and the revision fails
    (cmd/helm/upgrade.go: "Release %s has been cancelled.")."""
    def handler(signum, frame):
        print(f"Release {release} has been cancelled.")
        settle(key, revision_no, "failed", f"Release \"{release}\" failed: context canceled")
        sys.exit(1)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def killed_mid_operation(key, revision_no):
    """Fault helm-killed: the SSH session dropped while helm ran (SIGHUP, which helm does not
    trap): the revision stays pending. The fault's value, if any, backdates it by that many
    seconds, standing for an interrupted run that long ago."""
    age = fault("helm-killed")
    if age is None:
        return
    if age:
        with cluster(write=True) as state:
            for r in state["releases"][key]["revisions"]:
                if r["revision"] == revision_no:
                    r["updated_ns"] -= int(float(age) * 10**9)
    os.kill(os.getpid(), signal.SIGKILL)


def helm_upgrade(args, flags, ns):
    if len(args) < 3:
        die("Error: \"helm upgrade\" requires 2 arguments")
    name, key = args[1], f"{ns}/{args[1]}"
    timeout_s = go_duration(flags["--timeout"]) if "--timeout" in flags else HELM_TIMEOUT_S
    chart, version = chart_from(args[2], flags.get("--repo"), flags.get("--version"))
    source = flags.get("-f") or flags.get("--values")
    values = (yaml.safe_load(sys.stdin.read() if source == "-" else open(source).read()) or {}) if source else {}
    with cluster(write=True) as state:
        record = state["releases"].get(key)
        if record is None:
            if "--install" not in flags and "-i" not in flags:
                die(f'Error: UPGRADE FAILED: "{name}" has no deployed releases')
            if ns not in state["namespaces"]:
                if "--create-namespace" not in flags:
                    die(f'Error: create: failed to create: namespaces "{ns}" not found')
                state["namespaces"].append(ns)
            record = state["releases"][key] = {"name": name, "namespace": ns, "revisions": []}
            install = True
        else:
            install = False
            # upgrade.go prepareUpgrade: the last revision pending is a run in progress.
            if record["revisions"][-1]["status"] in PENDING:
                die(f"Error: UPGRADE FAILED: {ERR_PENDING}")
        last = None if install else record["revisions"][-1]
        revision = new_revision(record, "pending-install" if install else "pending-upgrade", chart, version, values,
                                "Initial install underway" if install else "Preparing upgrade",
                                custom_labels(flags, last and last.get("labels")))
        number = revision["revision"]
        hook = start_hook(state, key, version, values) if chart == "jupyterhub" else None
        checksum = hook["checksum"] if hook else None
    on_cancel(key, number, name)
    killed_mid_operation(key, number)
    error = run_hook(key, timeout_s) if hook else None
    if error:
        # install.go: "failed pre-install: %s"; upgrade.go: "pre-upgrade hooks failed: %s".
        why = f"failed pre-install: {error}" if install else f"pre-upgrade hooks failed: {error}"
        settle(key, number, "failed", f"Release \"{name}\" failed: {why}" if install else f"Upgrade \"{name}\" failed: {why}")
        die(f"Error: {why}" if install else f"Error: UPGRADE FAILED: {why}")
    settle(key, number, "deployed", "Install complete" if install else "Upgrade complete", supersede=True,
           checksum=checksum)
    if not install:
        print(f'Release "{name}" has been upgraded. Happy Helming!')
    print(f"NAME: {name}\nNAMESPACE: {ns}\nSTATUS: deployed\nREVISION: {number}")


def helm_rollback(args, flags, ns):
    """rollback.go: a new revision with the target's chart and values, pending-rollback then
    deployed; the target must exist (revision 0: the previous one). No pending check."""
    if len(args) < 2:
        die("Error: \"helm rollback\" requires at least 1 argument")
    key = f"{ns}/{args[1]}"
    with cluster(write=True) as state:
        record = state["releases"].get(key)
        if record is None:
            die("Error: release: not found")
        current = record["revisions"][-1]
        wanted = int(args[2]) if len(args) > 2 else current["revision"] - 1
        target = next((r for r in record["revisions"] if r["revision"] == wanted), None)
        if target is None:
            die(f"Error: release has no {wanted} version")
        # rollback.go prepareRollback: the target revision's labels come back with it.
        revision = new_revision(record, "pending-rollback", target["chart"], target["version"], target["values"],
                                f"Rollback to {wanted}", target.get("labels"))
        number = revision["revision"]
    killed_mid_operation(key, number)
    settle(key, number, "deployed", f"Rollback to {wanted}", supersede=True)
    print("Rollback was a success! Happy Helming!")


def release_secrets(state) -> list:
    """helm's storage of every revision of every release, as the API shows it: one Secret per
    revision, sh.helm.release.v1.NAME.vN in the release's namespace, type helm.sh/release.v1,
    labels name, owner=helm, status, version, data.release the Release JSON gzipped and base64'd
    by helm (helm v3.17.3 pkg/storage/driver/secrets.go newSecretsObject, util.go encodeRelease)
    and base64'd again by the API (Secret data is bytes). Other Secrets are those applied
    (apply_secret), in state["secrets"]."""
    import base64
    import gzip
    items = []
    for record in state["releases"].values():
        first = record["revisions"][0]["updated_ns"] if record["revisions"] else 0
        for r in record["revisions"]:
            release = {"name": record["name"], "namespace": record["namespace"], "version": r["revision"],
                       "info": {"first_deployed": go_json_time(first), "last_deployed": go_json_time(r["updated_ns"]),
                                "deleted": "", "description": r["description"], "status": r["status"]},
                       "chart": {"metadata": {"name": r["chart"], "version": r["version"], "apiVersion": "v2"}},
                       "manifest": "---\n# (SIMULATION) the chart's rendered objects\n"}
            if r["values"]:
                release["config"] = r["values"]  # omitempty (pkg/release/release.go)
            stored = base64.b64encode(gzip.compress(json.dumps(release).encode(), compresslevel=9))
            items.append({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                          "metadata": {"name": f"sh.helm.release.v1.{record['name']}.v{r['revision']}",
                                       "namespace": record["namespace"],
                                       # custom labels first, helm's own over them (newSecretsObject)
                                       "labels": {**r.get("labels", {}),
                                                  "name": record["name"], "owner": "helm", "status": r["status"],
                                                  "version": str(r["revision"]),
                                                  "createdAt": str(r["updated_ns"] // 10**9)}},
                          "data": {"release": base64.b64encode(stored).decode()}})
    return items


def helm_list(state, flags, ns):
    everywhere = "-A" in flags or "--all-namespaces" in flags
    if "-a" in flags or "--all" in flags:
        shown = None
    else:
        shown = {s for flag, states in LIST_STATES.items() if flag in flags for s in states} or {"deployed", "failed"}
    rows = []
    for record in state["releases"].values():
        if not (everywhere or record["namespace"] == ns):
            continue
        r = record["revisions"][-1]  # list.go filterLatestReleases
        if shown is not None and r["status"] not in shown:
            continue
        rows.append({"name": record["name"], "namespace": record["namespace"], "revision": str(r["revision"]),
                     "updated": go_time(r["updated_ns"]), "status": r["status"],
                     "chart": f"{r['chart']}-{r['version']}", "app_version": ""})
    if flags.get("-o") == "json":
        print(json.dumps(rows))
    else:
        print("NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION")
        for r in rows:
            print("\t".join((r["name"], r["namespace"], r["revision"], r["updated"], r["status"], r["chart"], "")))


def helm_history(state, args, flags, ns):
    record = state["releases"].get(f"{ns}/{args[1]}") if len(args) > 1 else None
    if record is None:
        die("Error: release: not found")
    keep = int(flags.get("--max", 256))
    rows = [{"revision": r["revision"], "updated": go_json_time(r["updated_ns"]), "status": r["status"],
             "chart": f"{r['chart']}-{r['version']}", "app_version": "", "description": r["description"]}
            for r in record["revisions"][-keep:]]
    if flags.get("-o") == "json":
        print(json.dumps(rows))
    else:
        print("REVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION\tDESCRIPTION")
        for r in rows:
            print(f"{r['revision']}\t{r['updated']}\t{r['status']}\t{r['chart']}\t\t{r['description']}")


def helm(argv):
    args, flags = parse_flags(argv, with_value=("-n", "--namespace", "-o", "--output", "-f", "--values", "--version",
                                                 "--repo", "--timeout", "--kubeconfig", "--max", "--labels", "-l"))
    if not args:
        die("helm (SIMULATION): give a command")
    verb = args[0]
    if verb == "version":
        print(f'version.BuildInfo{{Version:"{HELM_VERSION}", GitCommit:"(SIMULATION)", GoVersion:"go1.23.7"}}')
        return
    if fault("helm-fail") is not None:
        die("Error: (SIMULATION) helm failed (fault helm-fail)")
    require_cluster(flags)
    ns = flags.get("-n", "default")
    if verb in ("upgrade", "install"):
        return helm_upgrade(args if verb == "upgrade" else ["upgrade", *args[1:]],
                            dict(flags, **({"--install": True} if verb == "install" else {})), ns)
    if verb == "rollback":
        return helm_rollback(args, flags, ns)
    with cluster(write=verb in ("uninstall", "delete")) as state:
        key = f"{ns}/{args[1]}" if len(args) > 1 else ""
        if verb in ("list", "ls"):
            helm_list(state, flags, ns)
        elif verb == "history":
            helm_history(state, args, flags, ns)
        elif verb == "get" and len(args) >= 3 and args[1] == "values":
            record = state["releases"].get(f"{ns}/{args[2]}")
            if not record:
                die("Error: release: not found")
            # get_values.go: the last revision's values, whatever its status.
            values = record["revisions"][-1]["values"]
            print(json.dumps(values) if flags.get("-o") == "json" else yaml.safe_dump(values))
        elif verb == "status":
            record = state["releases"].get(key)
            if not record:
                die("Error: release: not found")
            r = record["revisions"][-1]
            info = {"name": record["name"], "namespace": ns, "version": r["revision"],
                    "info": {"status": r["status"], "description": r["description"],
                             "last_deployed": go_json_time(r["updated_ns"])},
                    "chart": {"metadata": {"name": r["chart"], "version": r["version"]}}}
            print(json.dumps(info) if flags.get("-o") == "json" else f"NAME: {record['name']}\nSTATUS: {r['status']}")
        elif verb in ("uninstall", "delete"):
            # uninstall.go: every revision goes (without --keep-history), whatever their status;
            # the chart's objects with them (for the hub, its database's volume).
            if state["releases"].pop(key, None) is None:
                die(f"Error: uninstall: Release not loaded: {args[1]}: release: not found")
            state.setdefault("hooks", {}).pop(key, None)
            state.setdefault("hub_checksums", {}).pop(key, None)
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
